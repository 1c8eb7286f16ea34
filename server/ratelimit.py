"""Per-client rate limits: a sliding window of recent requests per (action, client)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

WINDOW_S = 60.0
SWEEP_EVERY = 1000


class RateLimiter:
    """At most `per_minute` requests per client in any 60-second window (0 = no limit)."""

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}
        self._calls = 0

    def check(self, client: str) -> float | None:
        """None if allowed (and counted); else the seconds until the client may try again."""
        if self.per_minute == 0:
            return None
        now = self._clock()
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._sweep(now)
        recent = self._seen.setdefault(client, deque())
        while recent and recent[0] <= now - WINDOW_S:
            recent.popleft()
        if len(recent) >= self.per_minute:
            return max(1.0, recent[0] + WINDOW_S - now)
        recent.append(now)
        return None

    def _sweep(self, now: float) -> None:
        """Forget clients with nothing in the window, so memory stays bounded."""
        for client in [
            c for c, seen in self._seen.items() if not seen or seen[-1] <= now - WINDOW_S
        ]:
            del self._seen[client]
