"""The SQLite store (the embedded backend): sessions, steps and answers, off the event loop."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from server.db_sqlite import SQLiteDatabase
from server.records import JourneySummary, Session
from server.store_sqlite_edits import SQLiteJourneyEdits
from server.store_sqlite_steps import SQLiteSteps

SESSION_MEMORY = 20000  # sessions kept in memory for the hot path (a few hundred bytes each)


class SQLiteStore(SQLiteSteps, SQLiteJourneyEdits):
    """The SQL of every call, run on db_sqlite's one connection, off the event loop: the
    sessions here, the steps and answers in SQLiteSteps, the journey edits in
    SQLiteJourneyEdits."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._db = SQLiteDatabase(path)
        self._sessions: dict[str, Session] = {}

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> bool:
        return await self._db.run(lambda db: db.execute("SELECT 1").fetchone()[0] == 1)

    async def create_session(
        self, *, owner: str, category: str, seed: int, questions_total: int
    ) -> Session:
        now = self._clock()
        session = Session.new(
            owner=owner, category=category, seed=seed, questions_total=questions_total, now=now
        )

        def insert(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    session.id,
                    owner,
                    category,
                    seed,
                    questions_total,
                    session.share_id,
                    now,
                    now,
                ),
            )
            db.execute(
                "INSERT INTO steps (session_id, n, kind, status, opened_at) "
                "VALUES (?, 0, 'scenario', 'open', ?)",
                (session.id, now),
            )

        await self._db.transaction(insert)
        return self._remember(session)

    async def session(self, session_id: str) -> Session | None:
        """From memory when seen lately: every stream request asks, and a session only changes
        through this store (its share link, its deletion, its expiry)."""
        known = self._sessions.get(session_id)
        if known is not None:
            return known
        row = await self._db.run(
            lambda db: db.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
        )
        return self._remember(Session(**dict(row))) if row else None

    def trim(self) -> None:
        """Forget the remembered sessions (memory pressure); they are read again when asked."""
        self._sessions.clear()

    def _remember(self, session: Session) -> Session:
        if len(self._sessions) >= SESSION_MEMORY:
            del self._sessions[next(iter(self._sessions))]
        self._sessions[session.id] = session
        return session

    async def session_by_share(self, share_id: str) -> Session | None:
        row = await self._db.run(
            lambda db: db.execute(
                "SELECT * FROM sessions WHERE share_id = ?", (share_id,)
            ).fetchone()
        )
        return Session(**dict(row)) if row else None

    async def sessions_of(self, owner: str, limit: int = 50) -> list[JourneySummary]:
        """The owner's sessions, newest first, with their progress and the scenario's opening."""
        sql = (
            "SELECT s.*, "
            "(SELECT COUNT(*) FROM steps t WHERE t.session_id = s.id AND t.status = 'done') AS done, "
            "(SELECT COUNT(*) FROM answers a WHERE a.session_id = s.id) AS answered, "
            "(SELECT substr(t.text, 1, 300) FROM steps t WHERE t.session_id = s.id AND t.n = 0 "
            "AND t.status IN ('done', 'stopped')) AS opening "
            "FROM sessions s WHERE owner = ? ORDER BY created_at DESC LIMIT ?"
        )
        rows = await self._db.run(lambda db: db.execute(sql, (owner, limit)).fetchall())
        result = []
        for row in rows:
            data = dict(row)
            done, answered, opening = data.pop("done"), data.pop("answered"), data.pop("opening")
            result.append(JourneySummary(Session(**data), done, answered, opening or ""))
        return result

    async def add_feedback(self, session_id: str) -> bool:
        row = await self._db.run(
            lambda db: db.execute(
                "INSERT INTO report_feedback VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                (session_id, self._clock()),
            ).fetchone()
        )
        return row is not None

    async def has_feedback(self, session_id: str) -> bool:
        row = await self._db.run(
            lambda db: db.execute(
                "SELECT 1 FROM report_feedback WHERE session_id = ?", (session_id,)
            ).fetchone()
        )
        return row is not None

    async def untouched_session(self, owner: str, category: str, since: float) -> Session | None:
        """The owner's newest journey in `category` started after `since` with no answer yet."""
        row = await self._db.run(
            lambda db: db.execute(
                "SELECT * FROM sessions s WHERE owner = ? AND category = ? AND created_at >= ? "
                "AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.session_id = s.id) "
                "ORDER BY created_at DESC LIMIT 1",
                (owner, category, since),
            ).fetchone()
        )
        return self._remember(Session(**dict(row))) if row else None

    async def schema_version(self) -> int:
        return await self._db.schema_version()

    async def counts(self) -> dict[str, int]:
        def count(db: sqlite3.Connection) -> dict[str, int]:
            tables = ("sessions", "steps", "answers")
            return {t: int(db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]) for t in tables}

        return await self._db.run(count)

    async def intact(self) -> bool:
        rows = await self._db.run(lambda db: db.execute("PRAGMA integrity_check").fetchall())
        return [tuple(row) for row in rows] == [("ok",)]

    async def journal_mode(self) -> str:
        """SQLite's journal mode ("wal"), for operators' checks and tests."""
        return await self._db.journal_mode()
