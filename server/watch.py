"""How a model call tells what became of each of its attempts: the record and the listener."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Attempt:
    """How one request to the upstream ended. `outcome` is "ok", "cancelled" (the caller left)
    or a ModelError reason; `retry_in_s` is set when another attempt follows after that wait."""

    number: int
    of: int
    outcome: str
    started: float
    first_token_s: float | None = None
    retry_in_s: float | None = None


class Watcher(Protocol):
    """Hears every attempt of one model call: the log, the metrics, the status a person sees and
    the admission's learned limit all follow from these."""

    def ended(self, attempt: Attempt) -> None: ...

    async def before_retry(self, attempt: Attempt) -> None:
        """After the backoff, before the next request: may wait (for a slot) or raise."""


class Unwatched:
    def ended(self, attempt: Attempt) -> None:
        pass

    async def before_retry(self, attempt: Attempt) -> None:
        pass


UNWATCHED = Unwatched()
