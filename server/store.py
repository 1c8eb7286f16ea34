"""The Store interface: sessions, steps and answers as the app sees them, on any database."""

from __future__ import annotations

from typing import Protocol

from server.records import (
    Conflict,
    Finished,
    JourneySummary,
    Session,
    Step,
    StepState,
    Unavailable,
    Unreachable,
)
from server.settings import Settings
from server.store_postgres import PostgresStore
from server.store_sqlite import SQLiteStore

__all__ = [
    "Conflict",
    "Finished",
    "Session",
    "Step",
    "StepState",
    "Store",
    "Unavailable",
    "Unreachable",
    "check_store",
    "open_store",
]


class Store(Protocol):
    """What every backend keeps, with the same meaning. Every write is committed before the call
    returns (an answer is durable before its response is sent). A step's `version` is its fencing
    token: a write naming a version that is no longer the step's changes nothing (finish_step
    raises Conflict, release leaves the step be); any other write that does not fit the stored
    state raises Conflict."""

    async def ping(self) -> bool:
        """Whether the database answers (readiness)."""
        ...

    async def close(self) -> None: ...

    async def schema_version(self) -> int:
        """The number of the last migration this database ran."""
        ...

    def trim(self) -> None:
        """Forget what is kept in memory (memory pressure); it is read again when asked."""
        ...

    async def create_session(
        self, *, owner: str, category: str, seed: int, questions_total: int
    ) -> Session:
        """A new session, not shared (sharing is opt-in), with its scenario step open."""
        ...

    async def session(self, session_id: str) -> Session | None: ...

    async def session_by_share(self, share_id: str) -> Session | None: ...

    async def sessions_of(self, owner: str, limit: int = 50) -> list[JourneySummary]:
        """The owner's sessions, newest first, with their count of finished steps and answers
        and the opening of their scenario (done or stopped; "" before it is written)."""
        ...

    async def untouched_session(self, owner: str, category: str, since: float) -> Session | None:
        """The owner's newest session in `category` created at or after `since` with no answer."""
        ...

    async def steps(self, session_id: str) -> list[Step]:
        """The session's steps in order; [] for an unknown session."""
        ...

    async def step(self, session_id: str, n: int) -> Step | None: ...

    async def step_states(self, keys: list[tuple[str, int]]) -> dict[tuple[str, int], StepState]:
        """The status and version of each of these (session id, n) steps that exists, in one
        read however many there are (a distributed worker checks every step it writes at once)."""
        ...

    async def answers(self, session_id: str) -> dict[int, str]: ...

    async def open_step(self, session_id: str, n: int, kind: str) -> None:
        """Open a step unless it already exists (idempotent)."""
        ...

    async def begin_generation(self, session_id: str, n: int) -> int:
        """Mark an open or generating step generating under a new version, empty its text and
        return that version; Conflict if the step is stopped, done or absent."""
        ...

    async def bump_version(self, session_id: str, n: int, version: int) -> int:
        """A new version for replaced text, one above `version`; Conflict unless the step is
        generating under `version` (a paused old owner must not move a newer owner's version)."""
        ...

    async def release(self, session_id: str, n: int, version: int) -> None:
        """Open a generating step again, if `version` is still its version."""
        ...

    async def finish_step(
        self,
        session_id: str,
        n: int,
        finished: Finished,
        *,
        version: int,
        open_next: tuple[int, str] | None,
    ) -> None:
        """Record the finished text and open the next step in one transaction; Conflict unless
        the step is generating under `version`."""
        ...

    async def save_answer(
        self, session_id: str, n: int, text: str, *, open_next: tuple[int, str]
    ) -> None:
        """Commit the answer to a finished question and open the next step; Conflict if the
        question is not finished or already answered."""
        ...

    async def stop_step(self, session_id: str, n: int, text: str = "") -> bool:
        """Stop an open or generating step, keeping `text` (what was written so far) as its
        text; whether it was one."""
        ...

    async def reopen_step(self, session_id: str, n: int) -> bool:
        """Open a stopped step again; whether it was stopped."""
        ...

    async def set_share(self, session_id: str, share_id: str | None) -> None:
        """A new share link, or None to revoke it."""
        ...

    async def add_feedback(self, session_id: str) -> bool:
        """Record "this report doesn't fit me" once per journey; False if it already was."""
        ...

    async def has_feedback(self, session_id: str) -> bool:
        """Whether the owner said the report does not fit them."""
        ...

    async def delete_session(self, session_id: str) -> None:
        """The session with its steps and answers."""
        ...

    async def expire(self, ttl_days: float, untouched_days: float | None = None) -> int:
        """Delete sessions not updated for `ttl_days`, and those with no answer created more
        than `untouched_days` ago, with their steps and answers; how many."""
        ...

    async def rewind(
        self, session_id: str, n: int, *, seed: int | None = None, answer: str | None = None
    ) -> None:
        """Go back to step n (done or stopped, else Conflict), in one transaction: the steps
        after it and the answers from n on are removed. With `answer` (question n must have had
        one, else Conflict) question n gets it and the step after it opens; without, step n
        opens to be written again, with the session's seed set to `seed` when given. A step
        opened here takes a version above every version the session's steps had."""
        ...

    # Reads for operators' checks and for tests, which look at what the app stored only
    # through the Store (so that they hold for every backend).

    async def counts(self) -> dict[str, int]:
        """How many sessions, steps and answers are stored."""
        ...

    async def intact(self) -> bool:
        """Whether the database is undamaged (after a crash, say)."""
        ...

    async def interrupt(self, session_id: str, n: int) -> int:
        """Leave a step as a process that died while writing it leaves it: generating, under a
        new version, whatever its state; the new version (crash drills; the app never calls
        this). Conflict if the step does not exist."""
        ...


async def open_store(settings: Settings) -> Store:
    """The store the settings choose, its schema brought up to date; Unreachable (one line, which
    server and where) when the distributed backend's database does not answer."""
    if settings.scale.backend == "distributed":
        return await PostgresStore.connect(settings.scale.database_url)
    return SQLiteStore(settings.storage.data_dir / "crossroads.db")


async def check_store(settings: Settings) -> None:
    """Open the store once and close it: run.py's start-up check, which also migrates the schema
    before any worker serves."""
    store = await open_store(settings)
    await store.close()
