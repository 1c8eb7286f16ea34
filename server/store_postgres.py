"""The PostgreSQL store (the distributed backend): sessions, steps and answers, shared by every
worker on every machine; the connections are db_postgres's."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from server import schema
from server.db_postgres import PostgresDatabase
from server.records import JourneySummary, Session, Unavailable
from server.store_postgres_edits import PostgresJourneyEdits
from server.store_postgres_steps import PostgresSteps


class PostgresStore(PostgresSteps, PostgresJourneyEdits):
    """Every call checks a connection out of the pool; nothing about a session is kept in
    memory, since another worker may change or delete it at any time. The sessions are here,
    the steps and answers in PostgresSteps, the journey edits in PostgresJourneyEdits."""

    def __init__(
        self, database: PostgresDatabase, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = database
        self._clock = clock

    @classmethod
    async def connect(cls, url: str, *, clock: Callable[[], float] = time.time) -> PostgresStore:
        """Connect, migrate the schema and return the store; Unreachable (one line saying which
        server and where) if the server does not answer."""
        return cls(await PostgresDatabase.connect(url), clock=clock)

    async def close(self) -> None:
        await self._db.close()

    async def schema_version(self) -> int:
        return await self._db.schema_version()

    async def ping(self) -> bool:
        return await self._db.ping()

    def trim(self) -> None:
        """Nothing is kept in memory."""

    async def create_session(
        self, *, owner: str, category: str, seed: int, questions_total: int
    ) -> Session:
        now = self._clock()
        session = Session.new(
            owner=owner, category=category, seed=seed, questions_total=questions_total, now=now
        )
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO sessions (id, owner, category, seed, questions_total, share_id, "
                "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (session.id, owner, category, seed, questions_total, session.share_id, now, now),
            )
            await conn.execute(
                "INSERT INTO steps (session_id, n, kind, status, opened_at) "
                "VALUES (%s, 0, 'scenario', 'open', %s)",
                (session.id, now),
            )
        return session

    async def session(self, session_id: str) -> Session | None:
        row = await self._db.one("SELECT * FROM sessions WHERE id = %s", (session_id,))
        return Session(**row) if row else None

    async def session_by_share(self, share_id: str) -> Session | None:
        row = await self._db.one("SELECT * FROM sessions WHERE share_id = %s", (share_id,))
        return Session(**row) if row else None

    async def sessions_of(self, owner: str, limit: int = 50) -> list[JourneySummary]:
        rows = await self._db.all(
            "SELECT s.*, "
            "(SELECT COUNT(*) FROM steps t WHERE t.session_id = s.id AND t.status = 'done') "
            "AS done, "
            "(SELECT COUNT(*) FROM answers a WHERE a.session_id = s.id) AS answered, "
            "(SELECT substr(t.text, 1, 300) FROM steps t WHERE t.session_id = s.id AND t.n = 0 "
            "AND t.status IN ('done', 'stopped')) AS opening "
            "FROM sessions s WHERE owner = %s ORDER BY created_at DESC LIMIT %s",
            (owner, limit),
        )
        result = []
        for row in rows:
            done, answered = int(row.pop("done")), int(row.pop("answered"))
            opening = row.pop("opening") or ""
            result.append(JourneySummary(Session(**row), done, answered, opening))
        return result

    async def untouched_session(self, owner: str, category: str, since: float) -> Session | None:
        row = await self._db.one(
            "SELECT * FROM sessions s WHERE owner = %s AND category = %s AND created_at >= %s "
            "AND NOT EXISTS (SELECT 1 FROM answers a WHERE a.session_id = s.id) "
            "ORDER BY created_at DESC LIMIT 1",
            (owner, category, since),
        )
        return Session(**row) if row else None

    async def add_feedback(self, session_id: str) -> bool:
        sql = (
            "INSERT INTO report_feedback VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1 AS one"
        )
        return await self._db.one(sql, (session_id, self._clock())) is not None

    async def has_feedback(self, session_id: str) -> bool:
        sql = "SELECT 1 AS one FROM report_feedback WHERE session_id = %s"
        return await self._db.one(sql, (session_id,)) is not None

    async def counts(self) -> dict[str, int]:
        row = await self._db.one(
            "SELECT (SELECT COUNT(*) FROM sessions) AS sessions, "
            "(SELECT COUNT(*) FROM steps) AS steps, (SELECT COUNT(*) FROM answers) AS answers",
            (),
        )
        assert row is not None  # a SELECT without FROM always yields its one row
        return {table: int(count) for table, count in row.items()}

    async def intact(self) -> bool:
        """PostgreSQL keeps its own files consistent (its WAL) and has no integrity_check
        without an extension; what can be wrong here is a schema left half-way, so that is the
        check: every migration ran and every table reads."""
        try:
            await self.counts()
            return await self.schema_version() == schema.LATEST
        except (psycopg.Error, Unavailable):
            return False
