"""The PostgreSQL store's journey edits: a whole journey changed after the fact (rewound,
shared, deleted, expired)."""

from __future__ import annotations

from collections.abc import Callable

from server.db_postgres import PostgresDatabase
from server.records import Conflict
from server.store_postgres_steps import touch


class PostgresJourneyEdits:
    """PostgresStore's journey edits; the store sets these attributes."""

    _db: PostgresDatabase
    _clock: Callable[[], float]

    async def set_share(self, session_id: str, share_id: str | None) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE sessions SET share_id = %s WHERE id = %s", (share_id, session_id)
            )

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
            if not await touch(conn, session_id, now):  # the session's row first (finish_step)
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
