"""The PostgreSQL store's steps and answers: their reads, and the writes of a step's life,
each generation's fenced by the step's version."""

from __future__ import annotations

from collections.abc import Callable

from server.db_postgres import Connection, PostgresDatabase
from server.records import Conflict, Finished, Step, StepState, step_record


class PostgresSteps:
    """PostgresStore's steps and answers; the store sets these attributes."""

    _db: PostgresDatabase
    _clock: Callable[[], float]

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

    async def step_states(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], StepState]:
        if not keys:
            return {}
        # One query for every step a worker writes (its lease renewal), however many.
        rows = await self._db.all(
            "SELECT s.session_id, s.n, s.status, s.version FROM steps AS s "
            "JOIN unnest(%s::text[], %s::int[]) AS k (session_id, n) "
            "ON s.session_id = k.session_id AND s.n = k.n",
            ([sid for sid, _ in keys], [n for _, n in keys]),
        )
        return {(r["session_id"], r["n"]): StepState(r["status"], r["version"]) for r in rows}

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
            if not await touch(conn, session_id, now):
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
            if not await touch(conn, session_id, now):  # the session's row first (finish_step)
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


async def touch(conn: Connection, session_id: str, now: float) -> bool:
    """Mark the session used now, locking its row until the transaction ends; False if gone."""
    updated = await conn.execute(
        "UPDATE sessions SET updated_at = %s WHERE id = %s", (now, session_id)
    )
    return updated.rowcount == 1
