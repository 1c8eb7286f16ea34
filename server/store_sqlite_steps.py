"""The SQLite store's steps and answers: their reads, and the writes of a step's life, each
generation's fenced by the step's version."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from server.db_sqlite import SQLiteDatabase
from server.records import Conflict, Finished, Step, StepState, step_record

# Steps read by one statement of step_states (two parameters each; SQLite allows 999 at least).
STATES_PER_QUERY = 400


class SQLiteSteps:
    """SQLiteStore's steps and answers; the store sets these attributes."""

    _db: SQLiteDatabase
    _clock: Callable[[], float]

    async def steps(self, session_id: str) -> list[Step]:
        rows = await self._db.run(
            lambda db: db.execute(
                "SELECT * FROM steps WHERE session_id = ? ORDER BY n", (session_id,)
            ).fetchall()
        )
        return [step_record(dict(row)) for row in rows]

    async def step(self, session_id: str, n: int) -> Step | None:
        row = await self._db.run(
            lambda db: db.execute(
                "SELECT * FROM steps WHERE session_id = ? AND n = ?", (session_id, n)
            ).fetchone()
        )
        return step_record(dict(row)) if row else None

    async def step_states(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], StepState]:
        def read(db: sqlite3.Connection) -> dict[tuple[str, int], StepState]:
            found: dict[tuple[str, int], StepState] = {}
            # In slices: SQLite bounds the parameters of one statement.
            for at in range(0, len(keys), STATES_PER_QUERY):
                part = keys[at : at + STATES_PER_QUERY]
                pairs = ", ".join("(?, ?)" for _ in part)
                rows = db.execute(
                    "SELECT session_id, n, status, version FROM steps "
                    f"WHERE (session_id, n) IN (VALUES {pairs})",
                    [value for key in part for value in key],
                ).fetchall()
                for row in rows:
                    found[(row["session_id"], row["n"])] = StepState(row["status"], row["version"])
            return found

        return await self._db.run(read) if keys else {}

    async def answers(self, session_id: str) -> dict[int, str]:
        rows = await self._db.run(
            lambda db: db.execute(
                "SELECT n, text FROM answers WHERE session_id = ? ORDER BY n", (session_id,)
            ).fetchall()
        )
        return {row["n"]: row["text"] for row in rows}

    async def open_step(self, session_id: str, n: int, kind: str) -> None:
        """Open a step unless it already exists (idempotent)."""
        await self._db.run(
            lambda db: db.execute(
                "INSERT OR IGNORE INTO steps (session_id, n, kind, status, opened_at) "
                "VALUES (?, ?, ?, 'open', ?)",
                (session_id, n, kind, self._clock()),
            )
        )

    async def begin_generation(self, session_id: str, n: int) -> int:
        """Mark a step generating under a new text version, and return that version."""

        def begin(db: sqlite3.Connection) -> int:
            row = db.execute(
                "UPDATE steps SET status = 'generating', version = version + 1, text = '' "
                "WHERE session_id = ? AND n = ? AND status IN ('open', 'generating') "
                "RETURNING version",
                (session_id, n),
            ).fetchone()
            if row is None:
                raise Conflict(f"step {n} of {session_id} is not open")
            return int(row[0])

        return await self._db.transaction(begin)

    async def bump_version(self, session_id: str, n: int, version: int) -> int:
        row = await self._db.run(
            lambda db: db.execute(
                "UPDATE steps SET version = version + 1 WHERE session_id = ? AND n = ? "
                "AND status = 'generating' AND version = ? RETURNING version",
                (session_id, n, version),
            ).fetchone()
        )
        if row is None:
            raise Conflict(f"step {n} of {session_id} is no longer generation {version}'s")
        return int(row[0])

    async def release(self, session_id: str, n: int, version: int) -> None:
        """A generation that ended without text (abandoned, shut down): open again for the next
        viewer, unless the step was stopped or a newer generation has taken it since."""
        await self._db.run(
            lambda db: db.execute(
                "UPDATE steps SET status = 'open' WHERE session_id = ? AND n = ? "
                "AND status = 'generating' AND version = ?",
                (session_id, n, version),
            )
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
        """Record the finished text and, in the same transaction, open the step that follows;
        Conflict if the step was stopped or taken by a newer generation meanwhile."""

        def finish(db: sqlite3.Connection) -> None:
            now = self._clock()
            updated = db.execute(
                "UPDATE steps SET status = 'done', text = ?, source = ?, model = ?, note = ?, "
                "reason = ?, first_chunk_s = ?, duration_s = ?, chunks = ?, attempts = ? "
                "WHERE session_id = ? AND n = ? AND status = 'generating' AND version = ?",
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
            ).rowcount
            if updated == 0:
                raise Conflict(f"step {n} of {session_id} is no longer this generation's")
            if open_next is not None:
                db.execute(
                    "INSERT OR IGNORE INTO steps (session_id, n, kind, status, opened_at) "
                    "VALUES (?, ?, ?, 'open', ?)",
                    (session_id, open_next[0], open_next[1], now),
                )
            db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))

        await self._db.transaction(finish)

    async def save_answer(
        self, session_id: str, n: int, text: str, *, open_next: tuple[int, str]
    ) -> None:
        """Commit an answer to an open question and open the next step, or raise Conflict."""

        def save(db: sqlite3.Connection) -> None:
            row = db.execute(
                "SELECT status, kind FROM steps WHERE session_id = ? AND n = ?", (session_id, n)
            ).fetchone()
            if row is None or row["kind"] != "question" or row["status"] != "done":
                raise Conflict(f"question {n} is not open for an answer")
            try:
                db.execute(
                    "INSERT INTO answers VALUES (?, ?, ?, ?)", (session_id, n, text, self._clock())
                )
            except sqlite3.IntegrityError:
                raise Conflict(f"question {n} is already answered") from None
            db.execute(
                "INSERT OR IGNORE INTO steps (session_id, n, kind, status, opened_at) "
                "VALUES (?, ?, ?, 'open', ?)",
                (session_id, open_next[0], open_next[1], self._clock()),
            )
            db.execute(
                "UPDATE sessions SET updated_at = ? WHERE id = ?", (self._clock(), session_id)
            )

        await self._db.transaction(save)

    async def stop_step(self, session_id: str, n: int, text: str = "") -> bool:
        """The person stopped a running step: it keeps the text written so far and waits until
        they ask for it again."""
        row = await self._db.run(
            lambda db: db.execute(
                "UPDATE steps SET status = 'stopped', text = ? WHERE session_id = ? AND n = ? "
                "AND status IN ('open', 'generating') RETURNING n",
                (text, session_id, n),
            ).fetchone()
        )
        return row is not None

    async def reopen_step(self, session_id: str, n: int) -> bool:
        row = await self._db.run(
            lambda db: db.execute(
                "UPDATE steps SET status = 'open' WHERE session_id = ? AND n = ? "
                "AND status = 'stopped' RETURNING n",
                (session_id, n),
            ).fetchone()
        )
        return row is not None

    async def interrupt(self, session_id: str, n: int) -> int:
        row = await self._db.run(
            lambda db: db.execute(
                "UPDATE steps SET status = 'generating', version = version + 1 "
                "WHERE session_id = ? AND n = ? RETURNING version",
                (session_id, n),
            ).fetchone()
        )
        if row is None:
            raise Conflict(f"step {n} of {session_id} does not exist")
        return int(row[0])
