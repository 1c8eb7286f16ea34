"""Both backends for the tests: `database` is an empty SQLite file (embedded) or PostgreSQL database
with an empty Redis (distributed), parametrized, and `store` a store opened on it."""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
import pytest

from server.backends import Backends, open_backends
from server.settings import Settings, load
from server.store import Store
from server.store_postgres import PostgresStore
from server.store_sqlite import SQLiteStore
from tests.conftest import fast_limits

Backend = Literal["sqlite", "postgres"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "postgres")


@dataclass(frozen=True)
class Database:
    """Where one test's data lives; open() gives a store on it (as many as the test wants)."""

    backend: Backend
    where: str  # the SQLite file or the PostgreSQL URL
    data_dir: Path  # the app's data dir (the SQLite file and the disk cache are in it)
    redis_url: str = ""  # the distributed backend's Redis: rate limits, cache and pool

    async def open(self, *, clock: Callable[[], float] = time.time) -> Store:
        if self.backend == "postgres":
            return await PostgresStore.connect(self.where, clock=clock)
        # On a thread, as a second process would: opening migrates, and stores opened at once
        # must really race for the file.
        return await anyio.to_thread.run_sync(
            functools.partial(SQLiteStore, Path(self.where), clock=clock)
        )

    def settings(self, **sections: dict[str, Any]) -> Settings:
        """Test settings (conftest's short deadlines) for an app that keeps its sessions here;
        `sections` override them further."""
        overrides: dict[str, dict[str, Any]] = {
            "storage": {"data_dir": str(self.data_dir)},
            "limits": fast_limits(),
            "stream": {"heartbeat_s": 1.0, "frame_ms": 20, "abandon_grace_s": 1.0},
            "offline": {"chars_per_s": 4000.0},
        }
        environ = {}
        if self.backend == "postgres":
            overrides["scale"] = {
                "backend": "distributed",
                "database_url": self.where,
                "redis_url": self.redis_url,
            }
            environ["CROSSROADS_SECRET_KEY"] = "shared-by-every-worker"
        for section, values in sections.items():
            overrides.setdefault(section, {}).update(values)
        return load(environ=environ, overrides=overrides)

    async def open_backends(self, **sections: dict[str, Any]) -> Backends:
        """The cache and rate limits an app with these settings opens (close() them)."""
        return await open_backends(self.settings(**sections))


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """An empty database of each backend in turn (PostgreSQL and Redis start on first use)."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        redis_url = request.getfixturevalue("redis_url")
        # The secret still lives in a data dir: the URLs name the servers only.
        return Database("postgres", url, tmp_path / "data", redis_url)
    return Database("sqlite", str(tmp_path / "data" / "crossroads.db"), tmp_path / "data")


@pytest.fixture
async def store(database: Database) -> AsyncIterator[Store]:
    opened = await database.open()
    yield opened
    await opened.close()
