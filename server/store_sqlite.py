"""The SQLite store (the embedded backend): sessions, steps and answers, off the event loop."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from server.db_sqlite import SQLiteDatabase
from server.records import Conflict, Finished, JourneySummary, Session, Step, step_record

SESSION_MEMORY = 20000  # sessions kept in memory for the hot path (a few hundred bytes each)


class SQLiteStore:
    """The SQL of every call, run on db_sqlite's one connection, off the event loop."""

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

    async def set_share(self, session_id: str, share_id: str | None) -> None:
        """A new share link, or None to revoke it."""
        self._sessions.pop(session_id, None)
        await self._db.run(
            lambda db: db.execute(
                "UPDATE sessions SET share_id = ? WHERE id = ?", (share_id, session_id)
            )
        )
        self._sessions.pop(session_id, None)  # a read meanwhile may have remembered the old row

    async def add_feedback(self, session_id: str) -> bool:
        row = await self._db.run(
            lambda db: db.execute(
                "INSERT INTO report_feedback VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING 1",
                (session_id, time.time()),
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

    async def rewind(
        self, session_id: str, n: int, *, seed: int | None = None, answer: str | None = None
    ) -> None:
        """Go back to step n: the steps after it and the answers from n on are removed. With
        `answer`, question n gets that answer and the step after it opens; without, step n
        opens to be written again (under a new seed when given). Conflict if step n is not done
        or stopped."""

        def rewind(db: sqlite3.Connection) -> None:
            now = time.time()
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

    async def journal_mode(self) -> str:
        """SQLite's journal mode ("wal"), for operators' checks and tests."""
        return await self._db.journal_mode()


def _next_kind(db: sqlite3.Connection, session_id: str, n: int) -> str:
    total = db.execute(
        "SELECT questions_total FROM sessions WHERE id = ?", (session_id,)
    ).fetchone()[0]
    return "question" if n <= total else "report"
