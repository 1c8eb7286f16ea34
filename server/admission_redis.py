"""One admission budget and one FIFO queue for every worker of the deployment, kept in Redis."""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
from redis.exceptions import MaxConnectionsError

from server import logs
from server.admission import NotAdmitted
from server.capacity import AdaptiveLimit, Sample
from server.capacity_redis import KEY as LIMIT_KEY
from server.capacity_redis import RedisLimit
from server.reasons import FailureReason
from server.shared_redis import UNAVAILABLE, RedisBusy, SharedRedis

PREFIX = "crossroads:admission:"
SLOTS = PREFIX + "slots"  # sorted set: ticket -> its lease's end (ms, Redis's clock)
QUEUE = PREFIX + "queue"  # sorted set: ticket -> its place (a sequence number)
ALIVE = PREFIX + "alive"  # sorted set: waiting ticket -> when it is forgotten unless it polls
SEQ = PREFIX + "seq"
# A call stepping back between attempts (the learned limit fell) waits ahead of newcomers, in
# its own order among those who stepped back, as in the embedded queue. Scores stay below
# 1e14 so that Lua's number formatting (14 digits) keeps them exact.
FRONT = 10**12
POLL_S = 0.2  # how often a waiter asks for its place; a release on this worker wakes it at once
# A waiter that stops polling (its worker died) leaves the line after this; a live one polls
# many times within it.
WAIT_LEASE_S = 3.0
UNAVAILABLE_REASON: FailureReason = "admission_unavailable"

# The limit K: the maximum, or the learned value in Redis (clamped to 1..maximum). Every script
# first forgets the slots whose lease ended (a dead worker's) and the waiters that stopped
# polling, on Redis's own clock, so no worker's clock or death can make K wrong.
_PREAMBLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local maximum = tonumber(ARGV[1])
local k = maximum
if ARGV[2] == '1' then
  local learned = tonumber(redis.call('GET', KEYS[5]))
  if learned then k = math.max(1, math.min(maximum, learned)) end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, ticket in ipairs(gone) do
  redis.call('ZREM', KEYS[2], ticket)
  redis.call('ZREM', KEYS[3], ticket)
end
"""
# Grant and position, one atomic step: the ticket joins the line (once), and is granted a slot
# when fewer tickets stand ahead of it than slots are free; otherwise the answer is its place.
# ARGV: maximum, use learned, lease ms, ticket, front, waiter lease ms, key ttl ms.
GRANT = (
    _PREAMBLE
    + """
local ticket = ARGV[4]
local granted = 0
local ahead = 0
if not redis.call('ZSCORE', KEYS[1], ticket) then
  if not redis.call('ZSCORE', KEYS[2], ticket) then
    local seq = redis.call('INCR', KEYS[4])
    if ARGV[5] == '1' then seq = seq - 1000000000000 end
    redis.call('ZADD', KEYS[2], seq, ticket)
  end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ticket)
  ahead = redis.call('ZRANK', KEYS[2], ticket)
  if ahead < k - redis.call('ZCARD', KEYS[1]) then
    redis.call('ZREM', KEYS[2], ticket)
    redis.call('ZREM', KEYS[3], ticket)
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ticket)
    granted = 1
  end
else
  granted = 1
end
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
return {granted, ahead, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), k}
"""
)
# Renew every slot this worker holds, in one step. A ticket whose lease lapsed (Redis was away
# or restarted empty, or this worker stalled) takes a slot again only if one is free: K holds,
# and a call that cannot have its slot back is told so (it is cancelled and falls back).
# ARGV: maximum, use learned, lease ms, key ttl ms, tickets...
RENEW = (
    _PREAMBLE
    + """
local lost = {}
for i = 5, #ARGV do
  local ticket = ARGV[i]
  if redis.call('ZSCORE', KEYS[1], ticket) or redis.call('ZCARD', KEYS[1]) < k then
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ticket)
  else
    table.insert(lost, ticket)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {k, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), lost}
"""
)
# Leave: give the slot back, or the place in line.
RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return {redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2])}
"""
KEYS = [SLOTS, QUEUE, ALIVE, SEQ, LIMIT_KEY]


class RedisSlot:
    """A slot held by one model call on this worker: a lease in Redis under `ticket`, renewed
    by the admission's background task; `scope` is cancelled when the lease was lost."""

    def __init__(self, admission: RedisAdmission, on_position: Callable[[int], None]) -> None:
        self._admission = admission
        self._on_position = on_position
        self.ticket = uuid.uuid4().hex
        self.held = False
        self.scope = anyio.CancelScope()
        # When its lease surely ends unless renewed (this worker's monotonic clock, from before
        # the grant or renewal was asked, so never later than Redis's own end of it).
        self.live_until = 0.0

    async def recheck(self) -> bool:
        """As Slot.recheck, across the deployment: when more calls hold a slot than the learned
        limit, give this one back and wait again ahead of the newcomers."""
        admission = self._admission
        if admission.in_use <= admission.slots:
            return False
        self.held = False
        admission._held.pop(self.ticket, None)
        await admission._release(self.ticket)
        await admission._acquire(self, front=True)
        return True


class RedisAdmission:
    """The distributed Admission: at most K model calls in flight across every worker, where K
    is `limit.value` (fixed, or learned in Redis through RedisLimit). Slots are leases of
    `lease_s`, renewed by `run` every third of it; one FIFO queue of tickets; each waiter polls
    its place (`on_position`: how many stand ahead of it in the whole deployment). `in_use` and
    `waiting` are the deployment's counts as last seen. When Redis does not answer, calls are
    refused (`admission_unavailable`) and fall back: never admitted on a per-process count.

    drain/resume stay per worker: memory pressure is one process's."""

    def __init__(
        self,
        redis: SharedRedis,
        limit: AdaptiveLimit,
        *,
        queue_timeout_s: float,
        lease_s: float,
        shared_limit: RedisLimit | None = None,
        poll_s: float = POLL_S,
        wait_lease_s: float = WAIT_LEASE_S,
    ) -> None:
        self.limit = limit
        self.queue_timeout_s = queue_timeout_s
        self.paused_reason: FailureReason | None = None
        self.in_use = 0
        self.waiting = 0
        self.read_at = 0.0  # see ModelAdmission.read_at
        self._redis = redis
        self._shared_limit = shared_limit
        self._lease_s = lease_s
        self._lease_ms = int(lease_s * 1000)
        self._renew_s = lease_s / 3
        self._poll_s = poll_s
        self._wait_lease_ms = int(max(wait_lease_s, 3 * poll_s) * 1000)
        # Idle keys go once nothing can refer to them any more.
        self._ttl_ms = int(10 * max(lease_s, wait_lease_s, queue_timeout_s) * 1000)
        self._grant = redis.client.register_script(GRANT)
        self._renew = redis.client.register_script(RENEW)
        self._leave = redis.client.register_script(RELEASE)
        self._held: dict[str, RedisSlot] = {}
        self._wake = anyio.Event()
        self._unavailable = False

    @property
    def slots(self) -> int:
        return self.limit.value

    def _limit_args(self) -> list[int]:
        return [self.limit.maximum, 1 if self._shared_limit is not None else 0]

    def _seen(self, k: int, in_use: int, waiting: int) -> None:
        self.in_use, self.waiting = in_use, waiting
        self.read_at = time.time()
        if self._shared_limit is not None:
            self._shared_limit.seen(k)

    @asynccontextmanager
    async def slot(
        self, on_position: Callable[[int], None] = lambda _: None
    ) -> AsyncIterator[RedisSlot]:
        held = RedisSlot(self, on_position)
        await self._acquire(held)
        try:
            with held.scope:
                yield held
        finally:
            self._held.pop(held.ticket, None)
            if held.held:
                await self._release(held.ticket)
        if held.scope.cancelled_caught:
            # The lease lapsed and another call took the slot: running on would make K + 1.
            raise NotAdmitted(UNAVAILABLE_REASON)

    def observe(self, outcome: str, *, started: float, first_token_s: float | None) -> None:
        """Learn from one attempt; a raised limit makes this worker's waiters ask at once."""
        before = self.slots
        sample = Sample(outcome, started, first_token_s, self.in_use, self.waiting)
        if self.limit.observe(sample):
            self._nudge()
        if self.slots != before:
            self._nudge()  # waiters tell their place again, with the new limit in the text

    async def _acquire(self, held: RedisSlot, *, front: bool = False) -> None:
        """Wait for a slot (polling the shared line) at most queue_timeout_s; NotAdmitted when
        it runs out, when admission is drained here, or when Redis does not answer."""
        if self.paused_reason is not None:
            raise NotAdmitted(self.paused_reason)
        position = -1
        shown_limit = self.slots
        granted = False
        try:
            with anyio.move_on_after(self.queue_timeout_s):
                while True:
                    wake = self._wake
                    asked = time.monotonic()
                    granted, ahead = await self._ask(held.ticket, front)
                    if granted:
                        break
                    if ahead != position or self.slots != shown_limit:
                        position, shown_limit = ahead, self.slots
                        held._on_position(ahead)
                    if self.paused_reason is not None:
                        raise NotAdmitted(self.paused_reason)
                    with anyio.move_on_after(self._poll_s):
                        await wake.wait()
        except BaseException:
            await self._release(held.ticket)
            raise
        if not granted:
            await self._release(held.ticket)
            raise NotAdmitted("queue_timeout")
        held.held = True
        held.live_until = asked + self._lease_s
        self._held[held.ticket] = held

    async def _ask(self, ticket: str, front: bool) -> tuple[bool, int]:
        args = [*self._limit_args(), self._lease_ms, ticket, 1 if front else 0]
        args += [self._wait_lease_ms, self._ttl_ms]
        try:
            granted, ahead, in_use, waiting, k = await self._redis.call(
                lambda: self._grant(keys=KEYS, args=args)
            )
        except UNAVAILABLE as exc:
            self._note_unavailable(exc)
            raise NotAdmitted(UNAVAILABLE_REASON) from None
        self._note_available()
        self._seen(int(k), int(in_use), int(waiting))
        return bool(granted), int(ahead)

    async def _release(self, ticket: str) -> None:
        """Give the ticket back, shielded from cancellation (a cancelled call must not keep its
        slot until the lease ends); when Redis is away, the lease ends it."""
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(*UNAVAILABLE):
                # Both counts: the last waiter leaving must not leave the gauge of the line
                # at its last reading while nobody asks again.
                in_use, waiting = await self._redis.call(
                    lambda: self._leave(keys=KEYS[:3], args=[ticket])
                )
                self.in_use, self.waiting = int(in_use), int(waiting)
                self.read_at = time.time()
        self._nudge()

    async def renew(self) -> None:
        """Renew every slot held here in one script; cancel the calls whose slot is gone. Idle,
        read the counts instead: whether Redis answers (what the page says writes) and the
        gauges then stay current on every worker, for one call per renewal period."""
        if not self._held:
            await self.refresh()
            return
        tickets = list(self._held)
        args: list[str | int] = [*self._limit_args(), self._lease_ms, self._ttl_ms, *tickets]
        asked = time.monotonic()
        try:
            k, in_use, waiting, lost = await self._redis.call(
                lambda: self._renew(keys=KEYS, args=args)
            )
        except UNAVAILABLE as exc:
            # A blip shorter than the lease: keep running (while Redis is away every worker
            # refuses new calls, so none can take these slots; the next renewal takes them
            # again, or tells them they are lost). Past its lease a call is counted nowhere any
            # more, so it stops and its step falls back with a note, as new calls do.
            self._note_unavailable(exc)
            lapsed = [t for t, held in self._held.items() if held.live_until <= time.monotonic()]
            self._lose(lapsed, "Model call stopped: its slot's lease lapsed while Redis was away")
            return
        self._seen(int(k), int(in_use), int(waiting))
        for ticket in tickets:
            if ticket in self._held and ticket not in lost:
                self._held[ticket].live_until = asked + self._lease_s
        self._lose(lost, "Model slot lost: its lease lapsed and was taken")

    async def refresh(self) -> None:
        """Read the deployment's counts now (a scrape; an idle worker's renewal): else they are
        read only when this worker asks, renews or releases, and an idle worker kept showing
        slots that other workers had long given back. With Redis away no call is admitted anywhere, and those
        running stop once their lease ends: the slots this worker holds are all it can count."""
        args: list[str | int] = [*self._limit_args(), self._lease_ms, self._ttl_ms]
        try:
            k, in_use, waiting, _ = await self._redis.call(
                lambda: self._renew(keys=KEYS, args=args)
            )
        except (RedisBusy, MaxConnectionsError):
            return  # this worker's own load, not Redis away: the last reading stands
        except UNAVAILABLE as exc:
            self._note_unavailable(exc)
            self.in_use, self.waiting = len(self._held), 0
            self.read_at = time.time()
            return
        self._note_available()
        self._seen(int(k), int(in_use), int(waiting))

    def _lose(self, tickets: list[str], message: str) -> None:
        """Cancel the calls holding these tickets: each raises NotAdmitted and falls back."""
        for ticket in tickets:
            held = self._held.pop(ticket, None)
            if held is not None:
                held.held = False
                held.scope.cancel()
                logs.event(logging.WARNING, message)

    async def run(self) -> None:
        """The worker's background task: renew the slots held here every third of a lease, and
        send the learned limit's changes to Redis as soon as they are made."""
        while True:
            changed = self._shared_limit.changed if self._shared_limit is not None else None
            with anyio.move_on_after(self._renew_s):
                if changed is not None:
                    await changed.wait()
                else:
                    await anyio.sleep_forever()
            try:
                if self._shared_limit is not None:
                    await self._shared_limit.flush()
                await self.renew()
            except Exception:
                # An unforeseen answer (say a script error) must not end the worker's task
                # group: the slots' leases then lapse, and K still holds.
                logs.log.exception("Admission renewal failed")

    def _nudge(self) -> None:
        """Wake this worker's waiters to ask for their place now."""
        self._wake.set()
        self._wake = anyio.Event()

    def _note_unavailable(self, exc: BaseException) -> None:
        if not self._unavailable:
            self._unavailable = True
            logs.event(
                logging.WARNING,
                "Model calls refused: Redis, which holds the admission queue, is unreachable",
                error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
            )

    def _note_available(self) -> None:
        if self._unavailable:
            self._unavailable = False
            logs.event(logging.INFO, "Admission queue reachable again: admitting model calls")

    @property
    def refusing(self) -> FailureReason | None:
        if self.paused_reason is not None:
            return self.paused_reason
        return UNAVAILABLE_REASON if self._unavailable else None

    def drain(self, reason: FailureReason) -> None:
        """Pause admission on this worker (memory pressure): its waiters and new calls fall back."""
        self.paused_reason = reason
        self._nudge()

    def resume(self) -> None:
        self.paused_reason = None
