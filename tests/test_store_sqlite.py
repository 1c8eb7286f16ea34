"""What only the SQLite store does: WAL, adopting a database from before migrations, and
remembering sessions in memory (one process owns the file)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path

import pytest

from server import schema
from server.store_sqlite import SQLiteStore

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "data" / "crossroads.db")
    yield opened
    await opened.close()


async def new_session(store: SQLiteStore) -> str:
    session = await store.create_session(owner="o", category="finance", seed=7, questions_total=2)
    return session.id


async def test_the_database_is_in_wal_mode(store: SQLiteStore) -> None:
    assert await store.journal_mode() == "wal"


async def test_a_session_is_served_from_memory_until_it_changes(store: SQLiteStore) -> None:
    sid = await new_session(store)
    assert (await store.session(sid)) is (await store.session(sid))
    await store.set_share(sid, "fresh-link")
    session = await store.session(sid)
    assert session is not None and session.share_id == "fresh-link"


async def test_a_database_from_before_migrations_is_adopted_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as raw, raw:
        raw.executescript(
            "CREATE TABLE sessions (id TEXT PRIMARY KEY, owner TEXT NOT NULL, category TEXT NOT NULL,"
            " seed INTEGER NOT NULL, questions_total INTEGER NOT NULL, share_id TEXT UNIQUE,"
            " created_at REAL NOT NULL, updated_at REAL NOT NULL);"
            "INSERT INTO sessions VALUES ('old', 'o', 'finance', 1, 2, NULL, 1.0, 1.0);"
        )
    store = SQLiteStore(path)
    try:
        assert await store.schema_version() == schema.LATEST
        old = await store.session("old")
        assert old is not None and old.owner == "o"
        assert await store.steps("old") == []  # the tables it lacked were created
    finally:
        await store.close()


async def test_a_second_store_on_a_migrated_database_has_nothing_left_to_do(
    store: SQLiteStore, tmp_path: Path
) -> None:
    sid = await new_session(store)
    second = SQLiteStore(tmp_path / "data" / "crossroads.db")
    try:
        assert await second.schema_version() == schema.LATEST
        assert await second.step(sid, 0) is not None
    finally:
        await second.close()
