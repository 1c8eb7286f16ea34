"""Both backends for the tests, through one fixture.

`database` is an empty SQLite file (embedded: SQLite, in-process broker and admission, diskcache)
or an empty PostgreSQL database with an empty Redis (distributed: PostgreSQL, RedisBroker,
RedisAdmission, Redis cache and rate limits); `store` is a store opened on it, and conftest's
`make_settings` builds the app's settings on it.

Which tests run on both: every test that asks for `database` (or `store`), and every test of a
module or class marked `pytest.mark.both_backends` (`make_settings`, `settings`, `base_url`...
then follow the backend). A test of such a module that runs on SQLite alone says why with
`pytest.mark.embedded_only("why")`: an embedded-only mechanism, the suite's time budget, or a
distributed failure at random that a strict xfail elsewhere pins down. Test ids end in `[sqlite]`
or `[postgres]`; the PostgreSQL and Redis servers start once per session, on first use, and each
test gets a fresh database and a flushed Redis."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio.to_thread
import psycopg
import pytest

from server.backends import Backends, open_backends
from server.settings import Settings, load
from server.store import Store
from server.store_postgres import PostgresStore
from server.store_sqlite import SQLiteStore
from tests.conftest import fast_limits
from tests.pg import PostgresServer

Backend = Literal["sqlite", "postgres"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "postgres")
SECRET_KEY = "shared-by-every-worker"  # the distributed backend needs one (every worker's)


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
            environ["CROSSROADS_SECRET_KEY"] = SECRET_KEY
        for section, values in sections.items():
            overrides.setdefault(section, {}).update(values)
        return load(environ=environ, overrides=overrides)

    def environ(self) -> dict[str, str]:
        """The environment that points an app process (`run.py`) at this backend."""
        env = {"CROSSROADS_STORAGE__DATA_DIR": str(self.data_dir)}
        if self.backend == "postgres":
            env |= {
                "CROSSROADS_SCALE__BACKEND": "distributed",
                "CROSSROADS_SCALE__DATABASE_URL": self.where,
                "CROSSROADS_SCALE__REDIS_URL": self.redis_url,
                "CROSSROADS_SECRET_KEY": SECRET_KEY,
            }
        return env

    async def open_backends(self, **sections: dict[str, Any]) -> Backends:
        """The cache and rate limits an app with these settings opens (close() them)."""
        return await open_backends(self.settings(**sections))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "both_backends: run on the embedded and the distributed backend (tests/databases.py)",
    )
    config.addinivalue_line(
        "markers",
        "embedded_only(why): runs on SQLite alone, for the reason given (tests/databases.py)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test that depends on the backend runs once per backend (see the module's doc)."""
    if "backend" not in metafunc.fixturenames:
        return
    single = metafunc.definition.get_closest_marker("embedded_only")
    if "database" in metafunc.fixturenames:
        if single is not None:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: embedded_only with `database`")
    elif single is not None or metafunc.definition.get_closest_marker("both_backends") is None:
        return
    metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    """The backend this test runs on: SQLite unless the test is parametrized over both."""
    chosen: Backend = getattr(request, "param", "sqlite")
    return chosen


class SpareDatabases:
    """Emptied PostgreSQL databases, handed out again: emptying one (its schema dropped and made
    anew: ~5 ms) costs far less than creating one (CREATE DATABASE checkpoints: 0.15-0.3 s), and
    leaves it as empty as a new one (no table, no schema version)."""

    def __init__(self, server: PostgresServer) -> None:
        self._server = server
        self._free: list[str] = []

    def take(self) -> str:
        return self._free.pop() if self._free else self._server.create_database()

    def give_back(self, url: str) -> None:
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as admin:
                # Something still holding a lock (a store a test left open) makes it unusable.
                admin.execute("SET lock_timeout = '2s'")
                admin.execute("DROP SCHEMA public CASCADE")
                admin.execute("CREATE SCHEMA public")
        except psycopg.Error:
            with contextlib.suppress(psycopg.Error):  # the server may be down: it is gone then
                self._server.drop_database(url)
            return
        self._free.append(url)


@pytest.fixture(scope="session")
def spare_databases(postgres: PostgresServer) -> SpareDatabases:
    return SpareDatabases(postgres)


@pytest.fixture
def database(
    backend: Backend, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Database]:
    """An empty database of the test's backend (PostgreSQL and Redis start on first use)."""
    if backend == "sqlite":
        yield Database("sqlite", str(tmp_path / "data" / "crossroads.db"), tmp_path / "data")
        return
    spares: SpareDatabases = request.getfixturevalue("spare_databases")
    redis_url = request.getfixturevalue("redis_url")
    url = spares.take()
    # The secret still lives in a data dir: the URLs name the servers only.
    yield Database("postgres", url, tmp_path / "data", redis_url)
    spares.give_back(url)


@pytest.fixture
async def store(database: Database) -> AsyncIterator[Store]:
    opened = await database.open()
    yield opened
    await opened.close()
