"""The PostgreSQL store (the distributed backend): sessions, steps and answers, shared by every
worker on every machine; the connections are db_postgres's."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg

from server import schema
from server.db_postgres import Connection, PostgresDatabase
from server.records import (
    Conflict,
    Finished,
    JourneySummary,
    Session,
    Step,
    Unavailable,
    step_record,
)


class PostgresStore:
    """Every call checks a connection out of the pool; nothing about a session is kept in
    memory, since another worker may change or delete it at any time."""

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

    async def steps(self, session_id: str) -> list[Step]:
        rows = await self._db.all(
            "SELECT * FROM steps WHERE session_id = %s ORDER BY n", (session_id,)
        )
        return [step_record(row) for row in rows]

    async def step(self, session_id: str, n: int) -> Step | None:
        row = await self._db.one(
            "SELECT * FROM steps WHERE session_id = %s AND n = %s", (session_id, n)
        )
        return step_record(row) if row else None

    async def answers(self, session_id: str) -> dict[int, str]:
        rows = await self._db.all(
            "SELECT n, text FROM answers WHERE session_id = %s ORDER BY n", (session_id,)
        )
        return {row["n"]: row["text"] for row in rows}

    async def open_step(self, session_id: str, n: int, kind: str) -> None:
        async with self._db.connection() as conn:
            await _open(conn, session_id, n, kind, self._clock())

    async def begin_generation(self, session_id: str, n: int) -> int:
        row = await self._db.one(
            "UPDATE steps SET status = 'generating', version = version + 1, text = '' "
            "WHERE session_id = %s AND n = %s AND status IN ('open', 'generating') "
            "RETURNING version",
            (session_id, n),
        )
        if row is None:
            raise Conflict(f"step {n} of {session_id} is not open")
        return int(row["version"])

    async def bump_version(self, session_id: str, n: int, version: int) -> int:
        # Under READ COMMITTED the WHERE is checked again on a row a takeover changed meanwhile.
        row = await self._db.one(
            "UPDATE steps SET version = version + 1 WHERE session_id = %s AND n = %s "
            "AND status = 'generating' AND version = %s RETURNING version",
            (session_id, n, version),
        )
        if row is None:
            raise Conflict(f"step {n} of {session_id} is no longer generation {version}'s")
        return int(row["version"])

    async def release(self, session_id: str, n: int, version: int) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE steps SET status = 'open' WHERE session_id = %s AND n = %s "
                "AND status = 'generating' AND version = %s",
                (session_id, n, version),
            )

    async def finish_step(
        self,
        session_id: str,
        n: int,
        finished: Finished,
        *,
        version: int,
        open_next: tuple[int, str] | None,
    ) -> None:
        now = self._clock()
        async with self._db.transaction() as conn:
            # The session's row first, as every write that spans tables takes it: a concurrent
            # delete then waits for this transaction (or this one for it) instead of the two
            # locking each other's rows in opposite order.
            if not await _touch(conn, session_id, now):
                raise Conflict(f"session {session_id} is gone")
            # Under READ COMMITTED the WHERE is checked again on the row as a concurrent writer
            # left it, so the version fences a stop or a newer generation committed meanwhile.
            updated = await conn.execute(
                "UPDATE steps SET status = 'done', text = %s, source = %s, model = %s, "
                "note = %s, reason = %s, first_chunk_s = %s, duration_s = %s, chunks = %s, "
                "attempts = %s "
                "WHERE session_id = %s AND n = %s AND status = 'generating' AND version = %s",
                (
                    finished.text,
                    finished.source,
                    finished.model,
                    finished.note,
                    finished.reason,
                    finished.first_chunk_s,
                    finished.duration_s,
                    finished.chunks,
                    finished.attempts,
                    session_id,
                    n,
                    version,
                ),
            )
            if updated.rowcount == 0:
                raise Conflict(f"step {n} of {session_id} is no longer this generation's")
            if open_next is not None:
                await _open(conn, session_id, open_next[0], open_next[1], now)

    async def save_answer(
        self, session_id: str, n: int, text: str, *, open_next: tuple[int, str]
    ) -> None:
        now = self._clock()
        async with self._db.transaction() as conn:
            if not await _touch(conn, session_id, now):  # the session's row first (finish_step)
                raise Conflict(f"question {n} is not open for an answer")
            step = await (
                await conn.execute(
                    "SELECT status, kind FROM steps WHERE session_id = %s AND n = %s",
                    (session_id, n),
                )
            ).fetchone()
            if step is None or step["kind"] != "question" or step["status"] != "done":
                raise Conflict(f"question {n} is not open for an answer")
            saved = await (
                await conn.execute(
                    "INSERT INTO answers (session_id, n, text, created_at) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING n",
                    (session_id, n, text, now),
                )
            ).fetchone()
            if saved is None:
                raise Conflict(f"question {n} is already answered")
            await _open(conn, session_id, open_next[0], open_next[1], now)

    async def stop_step(self, session_id: str, n: int, text: str = "") -> bool:
        row = await self._db.one(
            "UPDATE steps SET status = 'stopped', text = %s WHERE session_id = %s AND n = %s "
            "AND status IN ('open', 'generating') RETURNING n",
            (text, session_id, n),
        )
        return row is not None

    async def reopen_step(self, session_id: str, n: int) -> bool:
        row = await self._db.one(
            "UPDATE steps SET status = 'open' WHERE session_id = %s AND n = %s "
            "AND status = 'stopped' RETURNING n",
            (session_id, n),
        )
        return row is not None

    async def set_share(self, session_id: str, share_id: str | None) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE sessions SET share_id = %s WHERE id = %s", (share_id, session_id)
            )

    async def add_feedback(self, session_id: str) -> bool:
        sql = (
            "INSERT INTO report_feedback VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING 1 AS one"
        )
        return await self._db.one(sql, (session_id, self._clock())) is not None

    async def has_feedback(self, session_id: str) -> bool:
        sql = "SELECT 1 AS one FROM report_feedback WHERE session_id = %s"
        return await self._db.one(sql, (session_id,)) is not None

    async def delete_session(self, session_id: str) -> None:
        async with self._db.connection() as conn:
            await conn.execute("DELETE FROM sessions WHERE id = %s", (session_id,))

    async def expire(self, ttl_days: float, untouched_days: float | None = None) -> int:
        now = self._clock()
        cutoff = now - ttl_days * 86400
        untouched = now - (untouched_days if untouched_days is not None else ttl_days) * 86400
        async with self._db.transaction() as conn:
            old = await conn.execute("DELETE FROM sessions WHERE updated_at < %s", (cutoff,))
            never = await conn.execute(
                "DELETE FROM sessions s WHERE created_at < %s AND NOT EXISTS "
                "(SELECT 1 FROM answers a WHERE a.session_id = s.id)",
                (untouched,),
            )
            return old.rowcount + never.rowcount

    async def rewind(
        self, session_id: str, n: int, *, seed: int | None = None, answer: str | None = None
    ) -> None:
        now = self._clock()
        async with self._db.transaction() as conn:
            if not await _touch(conn, session_id, now):  # the session's row first (finish_step)
                raise Conflict(f"step {n} of {session_id} cannot be rewound")
            step = await (
                await conn.execute(
                    "SELECT status, questions_total FROM steps JOIN sessions ON id = session_id "
                    "WHERE session_id = %s AND n = %s",
                    (session_id, n),
                )
            ).fetchone()
            if step is None or step["status"] not in ("done", "stopped"):
                raise Conflict(f"step {n} of {session_id} cannot be rewound")
            if answer is not None:
                had = await (
                    await conn.execute(
                        "SELECT 1 FROM answers WHERE session_id = %s AND n = %s", (session_id, n)
                    )
                ).fetchone()
                if had is None:
                    raise Conflict(f"step {n} of {session_id} is not an answered question")
            # Steps opened again start above every version a stale viewer may still hold.
            top = await (
                await conn.execute(
                    "SELECT COALESCE(MAX(version), 0) AS top FROM steps WHERE session_id = %s",
                    (session_id,),
                )
            ).fetchone()
            assert top is not None  # an aggregate always yields its one row
            await conn.execute(
                "DELETE FROM steps WHERE session_id = %s AND n > %s", (session_id, n)
            )
            await conn.execute(
                "DELETE FROM answers WHERE session_id = %s AND n >= %s", (session_id, n)
            )
            if answer is None:
                await conn.execute(
                    "UPDATE steps SET status = 'open', text = '', opened_at = %s, version = %s "
                    "WHERE session_id = %s AND n = %s",
                    (now, top["top"], session_id, n),
                )
            else:
                kind = "question" if n + 1 <= step["questions_total"] else "report"
                await conn.execute(
                    "INSERT INTO answers (session_id, n, text, created_at) VALUES (%s, %s, %s, %s)",
                    (session_id, n, answer, now),
                )
                await conn.execute(
                    "INSERT INTO steps (session_id, n, kind, status, opened_at, version) "
                    "VALUES (%s, %s, %s, 'open', %s, %s)",
                    (session_id, n + 1, kind, now, top["top"]),
                )
            if seed is not None:
                await conn.execute(
                    "UPDATE sessions SET seed = %s WHERE id = %s", (seed, session_id)
                )

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

    async def interrupt(self, session_id: str, n: int) -> int:
        row = await self._db.one(
            "UPDATE steps SET status = 'generating', version = version + 1 "
            "WHERE session_id = %s AND n = %s RETURNING version",
            (session_id, n),
        )
        if row is None:
            raise Conflict(f"step {n} of {session_id} does not exist")
        return int(row["version"])


async def _open(conn: Connection, session_id: str, n: int, kind: str, now: float) -> None:
    await conn.execute(
        "INSERT INTO steps (session_id, n, kind, status, opened_at) "
        "VALUES (%s, %s, %s, 'open', %s) ON CONFLICT DO NOTHING",
        (session_id, n, kind, now),
    )


async def _touch(conn: Connection, session_id: str, now: float) -> bool:
    """Mark the session used now, locking its row until the transaction ends; False if gone."""
    updated = await conn.execute(
        "UPDATE sessions SET updated_at = %s WHERE id = %s", (now, session_id)
    )
    return updated.rowcount == 1
