"""Both store backends for the tests: `database` is an empty SQLite file or PostgreSQL database,
parametrized, and `store` a store opened on it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from server.store import Store
from server.store_postgres import PostgresStore
from server.store_sqlite import SQLiteStore

Backend = Literal["sqlite", "postgres"]
BACKENDS: tuple[Backend, ...] = ("sqlite", "postgres")


@dataclass(frozen=True)
class Database:
    """Where one test's data lives; open() gives a store on it (as many as the test wants)."""

    backend: Backend
    where: str  # the SQLite file or the PostgreSQL URL

    async def open(self, *, clock: Callable[[], float] = time.time) -> Store:
        if self.backend == "postgres":
            return await PostgresStore.connect(self.where, clock=clock)
        return SQLiteStore(Path(self.where), clock=clock)

    def settings(self) -> dict[str, dict[str, Any]]:
        """Settings overrides that make an app use this database."""
        if self.backend == "postgres":
            return {"scale": {"backend": "distributed", "database_url": self.where}}
        return {"storage": {"data_dir": str(Path(self.where).parent)}}


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Database:
    """An empty database of each backend in turn (PostgreSQL starts on first use)."""
    if request.param == "postgres":
        return Database("postgres", request.getfixturevalue("postgres_url"))
    return Database("sqlite", str(tmp_path / "data" / "crossroads.db"))


@pytest.fixture
async def store(database: Database) -> AsyncIterator[Store]:
    opened = await database.open()
    yield opened
    await opened.close()
