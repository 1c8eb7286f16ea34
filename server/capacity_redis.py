"""The learned model-call limit as one value in Redis, shared by every worker of the deployment."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from server import logs
from server.shared_redis import UNAVAILABLE, SharedRedis

KEY = "crossroads:admission:limit"
# A learned limit is forgotten a day after its last change, as a restarted single process
# forgets it: an upstream that was overloaded once is probed from the maximum again.
TTL_S = 86400
# Compare-and-set, so that two workers lowering the limit at once both count (each change is
# applied to the value the other left, never to a stale copy). An absent key is the maximum.
COMPARE_AND_SET = """
local current = tonumber(redis.call('GET', KEYS[1]) or ARGV[3])
if current == tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[4])
  return {1, tonumber(ARGV[2])}
end
return {0, current}
"""
MAX_TRIES = 5


class RedisLimit:
    """A LimitStore whose value lives under KEY. `read` and `update` stay synchronous (admission
    calls them on every acquire and release): `read` answers from the value last seen in Redis
    (admission's scripts return it with every grant and renewal, see `seen`), and `update`
    applies the change to that copy at once and queues it for `flush`, which admission's
    background task runs, so the change reaches Redis within a moment and applies there to
    whatever value the deployment holds then."""

    def __init__(self, redis: SharedRedis, maximum: int) -> None:
        self.maximum = maximum
        self._redis = redis
        self._script = redis.client.register_script(COMPARE_AND_SET)
        self._value = maximum  # this worker's view, with its own changes applied
        self._seen = maximum  # the value Redis held when last heard from
        self._pending: list[Callable[[int], int]] = []
        self.changed = anyio.Event()  # set when a change waits to be flushed

    def read(self) -> int:
        return self._value

    def update(self, change: Callable[[int], int]) -> tuple[int, int]:
        old = self._value
        self._value = change(old)
        self._pending.append(change)
        self.changed.set()
        return old, self._value

    def seen(self, value: int) -> None:
        """The value Redis holds now (from an admission script); the local copy follows it
        unless a change of ours is still on its way there."""
        self._seen = value
        if not self._pending:
            self._value = value

    async def flush(self) -> None:
        """Send the queued changes, each applied to the value Redis holds (compare-and-set,
        retried on the value it answers). While Redis is away they stay queued for the next
        flush: a learned limit may lag, it is never lost or applied twice."""
        self.changed = anyio.Event()
        while self._pending:
            change = self._pending[0]
            try:
                for _ in range(MAX_TRIES):
                    expected = self._seen
                    new = change(expected)
                    applied, current = await self._compare_and_set(expected, new)
                    self._seen = int(current)
                    if applied:
                        break
                else:
                    logs.event(
                        logging.WARNING, "Shared concurrency limit contended; change dropped"
                    )
            except UNAVAILABLE:
                return
            self._pending.pop(0)
        self._value = self._seen

    async def _compare_and_set(self, expected: int, new: int) -> list[int]:
        args = [expected, new, self.maximum, TTL_S]
        result: list[int] = await self._redis.call(lambda: self._script(keys=[KEY], args=args))
        return result
