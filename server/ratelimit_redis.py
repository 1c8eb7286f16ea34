"""Per-client rate limits in Redis: one sliding window per client for every worker and machine."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from server import logs
from server.ratelimit import WINDOW_S
from server.shared_redis import UNAVAILABLE, SharedRedis

# One script, so that reading the window and counting a request are one atomic step on Redis's
# own clock (no worker's clock, no race between two workers that both see room for one more).
# The window is a sorted set of the requests' times in ms; it expires with its last request.
SLIDING_WINDOW = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tonumber(oldest[2]) + window - now
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""


class RedisRateLimiter:
    """The distributed backend's limiter: the same contract as LocalRateLimiter, held across all
    workers. `name` keeps one action's windows (sessions, answers) apart from another's.

    When Redis does not answer the request is allowed: a rate limit protects the service from
    one client, and refusing everyone (or a 500) while Redis is away would be the larger harm.
    Each refused check counts on `on_unavailable` (a metric); the log says when the limits stop
    holding and when they hold again, once each, not once per request."""

    def __init__(
        self,
        redis: SharedRedis,
        per_minute: int,
        *,
        name: str,
        window_s: float = WINDOW_S,
        on_unavailable: Callable[[], object] = lambda: None,
    ) -> None:
        self.per_minute = per_minute
        self._window_ms = int(window_s * 1000)
        self._prefix = f"crossroads:ratelimit:{name}:"
        self._redis = redis
        self._script = redis.client.register_script(SLIDING_WINDOW)
        self._on_unavailable = on_unavailable
        self._unavailable = False
        self._name = name

    async def check(self, client: str) -> float | None:
        if self.per_minute == 0:
            return None
        try:
            wait_ms = await self._redis.call(
                lambda: self._script(
                    keys=[self._prefix + client],
                    args=[self.per_minute, self._window_ms, uuid.uuid4().hex],
                )
            )
        except UNAVAILABLE as exc:
            self._on_unavailable()
            if not self._unavailable:
                self._unavailable = True
                logs.event(
                    logging.WARNING,
                    "Rate limit not enforced: Redis is unreachable",
                    limit=self._name,
                    error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                )
            return None
        if self._unavailable:
            self._unavailable = False
            logs.event(logging.INFO, "Rate limit enforced again: Redis answers", limit=self._name)
        wait_ms = int(wait_ms)
        return None if wait_ms < 0 else max(1.0, wait_ms / 1000)
