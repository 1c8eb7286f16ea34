"""The SQLite connection for the store: WAL mode, the schema's migrations, and every call
serialised on one long-lived thread of its own, off the event loop."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from server import schema
from server.serial_thread import SerialThread, ThreadClosed

T = TypeVar("T")
WAL_WAIT_S = 5.0
WAL_RETRY_S = 0.02


class SQLiteDatabase:
    """One connection in autocommit; `transaction` wraps a call in BEGIN IMMEDIATE."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        # First: switching a new file to WAL needs its lock too, and a second process starting
        # at the same moment must wait for it rather than fail with "database is locked".
        self._db.execute("PRAGMA busy_timeout=5000")
        _switch_to_wal(self._db)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        _migrate(self._db)
        # Every call after this one runs on this thread: the connection is never shared.
        self._thread = SerialThread(f"sqlite {path.name}")

    async def close(self) -> None:
        await self._thread.close(self._db.close)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        db = self._db
        try:
            return await self._thread.run(lambda: fn(db))
        except ThreadClosed:
            # What the connection itself says when used after closing.
            raise sqlite3.ProgrammingError("Cannot operate on a closed database.") from None

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return result

        return await self.run(call)

    async def schema_version(self) -> int:
        return await self.run(lambda db: int(db.execute(schema.CURRENT_VERSION).fetchone()[0]))

    async def journal_mode(self) -> str:
        return str(await self.run(lambda db: db.execute("PRAGMA journal_mode").fetchone()[0]))


def _switch_to_wal(db: sqlite3.Connection) -> None:
    """WAL mode. SQLite answers "database is locked" at once, without waiting in its busy
    handler, when another connection holds the new file while the mode changes (several
    stores opening it together): try again, for a bounded time, at start-up only."""
    deadline = time.monotonic() + WAL_WAIT_S
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(WAL_RETRY_S)


def _migrate(db: sqlite3.Connection) -> None:
    """Bring the schema up to date; BEGIN IMMEDIATE makes a second process starting at the same
    moment wait (busy_timeout) and then find nothing left to do."""
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute(schema.VERSION_TABLE)
        current = int(db.execute(schema.CURRENT_VERSION).fetchone()[0])
        for number, statements in schema.pending(current):
            for statement in statements:
                db.execute(statement)
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
