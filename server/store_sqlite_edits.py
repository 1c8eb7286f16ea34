"""The SQLite store's journey edits: a whole journey changed after the fact (rewound,
shared, deleted, expired), each forgetting the session the store remembers."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from server.db_sqlite import SQLiteDatabase
from server.records import Conflict, Session


class SQLiteJourneyEdits:
    """SQLiteStore's journey edits; the store sets these attributes."""

    _db: SQLiteDatabase
    _clock: Callable[[], float]
    _sessions: dict[str, Session]

    async def set_share(self, session_id: str, share_id: str | None) -> None:
        """A new share link, or None to revoke it."""
        self._sessions.pop(session_id, None)
        await self._db.run(
            lambda db: db.execute(
                "UPDATE sessions SET share_id = ? WHERE id = ?", (share_id, session_id)
            )
        )
        self._sessions.pop(session_id, None)  # a read meanwhile may have remembered the old row

    async def delete_session(self, session_id: str) -> None:
        """The session with its steps and answers (they cascade)."""
        self._sessions.pop(session_id, None)
        await self._db.run(
            lambda db: db.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
        )
        self._sessions.pop(session_id, None)  # a read meanwhile may have remembered the old row

    async def expire(self, ttl_days: float, untouched_days: float | None = None) -> int:
        """Sessions unused for `ttl_days`, and those never answered for `untouched_days`."""
        self._sessions.clear()
        now = self._clock()
        cutoff = now - ttl_days * 86400
        untouched = now - (untouched_days if untouched_days is not None else ttl_days) * 86400

        def expire(db: sqlite3.Connection) -> int:
            removed = db.execute("DELETE FROM sessions WHERE updated_at < ?", (cutoff,)).rowcount
            removed += db.execute(
                "DELETE FROM sessions WHERE created_at < ? AND NOT EXISTS "
                "(SELECT 1 FROM answers a WHERE a.session_id = sessions.id)",
                (untouched,),
            ).rowcount
            return int(removed)

        return await self._db.transaction(expire)

    async def rewind(
        self, session_id: str, n: int, *, seed: int | None = None, answer: str | None = None
    ) -> None:
        """Go back to step n: the steps after it and the answers from n on are removed. With
        `answer`, question n gets that answer and the step after it opens; without, step n
        opens to be written again (under a new seed when given). Conflict if step n is not done
        or stopped."""

        def rewind(db: sqlite3.Connection) -> None:
            now = self._clock()
            row = db.execute(
                "SELECT kind, status FROM steps WHERE session_id = ? AND n = ?", (session_id, n)
            ).fetchone()
            if row is None or row["status"] not in ("done", "stopped"):
                raise Conflict(f"step {n} of {session_id} cannot be rewound")
            if (
                answer is not None
                and not db.execute(
                    "SELECT 1 FROM answers WHERE session_id = ? AND n = ?", (session_id, n)
                ).fetchone()
            ):
                raise Conflict(f"step {n} of {session_id} is not an answered question")
            # Steps opened again start above every version a stale viewer may still hold.
            top = db.execute(
                "SELECT COALESCE(MAX(version), 0) FROM steps WHERE session_id = ?", (session_id,)
            ).fetchone()[0]
            db.execute("DELETE FROM steps WHERE session_id = ? AND n > ?", (session_id, n))
            db.execute("DELETE FROM answers WHERE session_id = ? AND n >= ?", (session_id, n))
            if answer is None:
                db.execute(
                    "UPDATE steps SET status = 'open', text = '', opened_at = ?, version = ? "
                    "WHERE session_id = ? AND n = ?",
                    (now, top, session_id, n),
                )
            else:
                db.execute("INSERT INTO answers VALUES (?, ?, ?, ?)", (session_id, n, answer, now))
                db.execute(
                    "INSERT INTO steps (session_id, n, kind, status, opened_at, version) "
                    "VALUES (?, ?, ?, 'open', ?, ?)",
                    (session_id, n + 1, _next_kind(db, session_id, n + 1), now, top),
                )
            if seed is not None:
                db.execute("UPDATE sessions SET seed = ? WHERE id = ?", (seed, session_id))
            db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", (now, session_id))

        self._sessions.pop(session_id, None)
        await self._db.transaction(rewind)
        self._sessions.pop(session_id, None)  # a read meanwhile may have remembered the old row


def _next_kind(db: sqlite3.Connection, session_id: str, n: int) -> str:
    total = db.execute(
        "SELECT questions_total FROM sessions WHERE id = ?", (session_id,)
    ).fetchone()[0]
    return "question" if n <= total else "report"
