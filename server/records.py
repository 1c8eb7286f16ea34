"""What the store keeps: the session, step and finished-step records, and the store's errors."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from server.reasons import FailureReason

StepStatus = Literal["open", "generating", "stopped", "done"]


class Conflict(Exception):
    """The write does not fit the stored state (a step not open, an answer already given)."""


class Unreachable(Exception):
    """The database does not answer at start-up; the message says which one and where."""


class Unavailable(Exception):
    """The database stopped answering mid-run: the call failed and is not acknowledged (a
    commit cut off mid-way may or may not have landed); it may be tried again once it is back."""


@dataclass(frozen=True)
class Session:
    id: str
    owner: str
    category: str
    seed: int
    questions_total: int
    share_id: str | None
    created_at: float
    updated_at: float

    @property
    def report_step(self) -> int:
        return self.questions_total + 1

    @classmethod
    def new(
        cls, *, owner: str, category: str, seed: int, questions_total: int, now: float
    ) -> Session:
        """A session as every store creates it: a random id, and no share link (sharing is
        opt-in: no link opens a journey until its owner makes one)."""
        return cls(
            id=secrets.token_urlsafe(12),
            owner=owner,
            category=category,
            seed=seed,
            questions_total=questions_total,
            share_id=None,
            created_at=now,
            updated_at=now,
        )


@dataclass(frozen=True)
class Step:
    session_id: str
    n: int
    kind: str
    status: StepStatus
    version: int
    text: str
    source: str | None
    model: str | None
    note: str | None
    reason: str | None
    first_chunk_s: float | None
    duration_s: float | None
    chunks: int | None
    attempts: int | None = None  # requests sent to the model for it, retries included


@dataclass(frozen=True)
class StepState:
    """What a step's writer checks while it writes: its status and version (the fencing token)."""

    status: StepStatus
    version: int


@dataclass(frozen=True)
class JourneySummary:
    """A line of the owner's journeys list: the session, how far it got, how it began."""

    session: Session
    done: int
    answered: int
    opening: str


@dataclass(frozen=True)
class Finished:
    """What a completed generation records with its step."""

    text: str
    source: str
    model: str
    note: str | None = None
    reason: FailureReason | None = None
    first_chunk_s: float | None = None
    duration_s: float | None = None
    chunks: int = 0
    attempts: int = 0


def step_record(row: Mapping[str, Any]) -> Step:
    """A step from a row by column name, whichever driver read it (the store passes a dict)."""
    return Step(
        session_id=row["session_id"],
        n=row["n"],
        kind=row["kind"],
        status=row["status"],
        version=row["version"],
        text=row["text"],
        source=row["source"],
        model=row["model"],
        note=row["note"],
        reason=row["reason"],
        first_chunk_s=row["first_chunk_s"],
        duration_s=row["duration_s"],
        chunks=row["chunks"],
        attempts=row["attempts"],
    )
