"""A step's lease in the distributed broker: one writer per step across the workers. The
holder's token fences every frame it appends (broker_publish_redis's script checks it), so a
writer paused past its lease changes nothing in Redis, as the step's stored version fences it
in the store."""

from __future__ import annotations

import contextlib
import secrets

import anyio

from server.broker_stream_redis import StepKeys
from server.shared_redis import UNAVAILABLE, SharedRedis

# Renew the lease (1), or, when ARGV[3] = "1", take it again if nobody holds it (2); 0 when
# this writer does not hold it (another worker does, or it lapsed).
RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if holder or ARGV[3] ~= '1' then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 2
"""
HELD, RETAKEN = 1, 2
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases:
    """One worker's lease scripts, registered once."""

    def __init__(self, redis: SharedRedis, lease_s: float) -> None:
        self.redis = redis
        self.lease_ms = max(1, int(lease_s * 1000))
        self.renew = redis.client.register_script(RENEW)
        self.release = redis.client.register_script(RELEASE)

    def of(self, keys: StepKeys) -> Lease:
        return Lease(self, keys)


class Lease:
    """One would-be writer's hold on one step, under a token of its own. Every call but
    release() raises UNAVAILABLE when Redis is away.

    A writer that has held its lease all along and finds it gone was paused or cut off past
    it: another worker may have taken the step, so it gives way. One that could not reach Redis
    (it began the step while Redis was away, or Redis went away since) takes the lease again if
    nobody holds it, and checks the store's version (RETAKEN)."""

    def __init__(self, leases: Leases, keys: StepKeys) -> None:
        self._leases = leases
        self._redis = leases.redis
        self.keys = keys
        self.token = secrets.token_hex(8)
        # Held at the last answer from Redis, and none failed since (the tick sets it too).
        self.sure = False

    async def acquire(self) -> bool:
        """Set if absent: whether this writer holds the step now."""
        keys, token, ms = self.keys, self.token, self._leases.lease_ms
        got = bool(
            await self._redis.call(
                lambda: self._redis.client.set(keys.lease, token, nx=True, px=ms)
            )
        )
        self.sure = got
        return got

    async def renew(self) -> int:
        """HELD (renewed), RETAKEN (nobody held it while Redis was out of reach: taken again),
        or 0 (not held: another writer holds it, or it lapsed)."""
        args: list[str | int] = [self.token, self._leases.lease_ms, "0" if self.sure else "1"]
        try:
            held = int(
                await self._redis.call(
                    lambda: self._leases.renew(keys=[self.keys.lease], args=args)
                )
            )
        except UNAVAILABLE:
            self.sure = False
            raise
        self.sure = held != 0
        return held

    async def release(self) -> None:
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(2),
            contextlib.suppress(*UNAVAILABLE),
        ):
            args = [self.token]
            await self._redis.call(lambda: self._leases.release(keys=[self.keys.lease], args=args))
