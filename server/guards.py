"""What may refuse a request before it reaches the journey: rate limits and memory pressure."""

from __future__ import annotations

from starlette.requests import Request

from server.errors import Problem
from server.ratelimit import RateLimiter
from server.watchdog import Watchdog

RETRY_AFTER_S = 30


async def limit(request: Request, limiter: RateLimiter) -> None:
    """429 with a friendly message when this client is over its per-minute limit."""
    client = request.client.host if request.client else "unknown"
    wait = await limiter.check(client)
    if wait is not None:
        raise Problem(
            429,
            "Slow down a little",
            f"That was a lot in one minute. Please try again in {int(wait)} seconds; nothing was lost.",
            retry_after=int(wait),
        )


def refuse_when_short_of_memory(watchdog: Watchdog) -> None:
    """At the hard memory level new journeys wait: the 503 page, with when to retry."""
    if watchdog.level == "hard":
        raise Problem(
            503,
            "Crossroads is short of memory",
            "New journeys are paused for a moment while the server recovers.",
            retry_after=RETRY_AFTER_S,
        )
