"""Per-client rate limits: the RateLimiter interface and its in-process sliding window."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

WINDOW_S = 60.0
SWEEP_EVERY = 1000


class RateLimiter(Protocol):
    """At most `per_minute` requests per client in any 60-second window (0 = no limit; the
    window is shorter only in tests)."""

    per_minute: int

    async def check(self, client: str) -> float | None:
        """None if allowed (and counted); else the seconds until the client may try again."""
        ...


class LocalRateLimiter:
    """The embedded backend's limiter: the window lives in this process's memory, so it holds
    per client only while there is one process."""

    def __init__(
        self,
        per_minute: int,
        *,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self._window_s = window_s
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._calls = 0

    async def check(self, client: str) -> float | None:
        if self.per_minute == 0:
            return None
        now = self._clock()
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._sweep(now)
        recent = self._seen.setdefault(client, deque())
        while recent and recent[0] <= now - self._window_s:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return max(1.0, recent[0] + self._window_s - now)
        recent.append(now)
        return None

    def _sweep(self, now: float) -> None:
        """Forget clients with nothing in the window, so memory stays bounded."""
        for client in [
            c for c, seen in self._seen.items() if not seen or seen[-1] <= now - self._window_s
        ]:
            del self._seen[client]
