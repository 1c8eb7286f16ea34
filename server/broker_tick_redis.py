"""The distributed broker's one tick per worker, instead of a loop per step: every check
interval one Redis round trip renews every lease the worker holds (at its renewal period),
refreshes or checks every step's "seen" key and reads every mirrored step's header; at each
renewal one store query reads the status and version of every step the worker writes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from server.broker_lease_redis import HELD, RETAKEN, Lease
from server.broker_stream_redis import Shared, StepKeys
from server.shared_redis import UNAVAILABLE, SharedRedis
from server.store import StepState, Store
from server.streaming import Key

logger = logging.getLogger("crossroads")

# One step's part of a tick. KEYS per step: its "seen" key, its lease, its header. ARGV[1] the
# grace in ms, ARGV[2] the lease in ms, then four per step: 'o' (written here) or 'm'
# (mirrored), '1' to set "seen" (someone here watches) or '0', the lease's token ('' when not
# renewed this tick), '1' to take the lease again if nobody holds it (Lease.renew). Returns
# per step {seen, held} (held as RENEW answers, -1 when not renewed) or {version, leased}.
TICK = """
local out = {}
for i = 0, #KEYS / 3 - 1 do
  local seen, lease, header = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local a = 4 * i + 2
  local what, refresh, token, retake = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4]
  local alive = 1
  if refresh == '1' then
    redis.call('SET', seen, '1', 'PX', ARGV[1])
  elseif what == 'o' then
    alive = redis.call('EXISTS', seen)
  end
  if what == 'o' then
    local held = -1
    if token ~= '' then
      local holder = redis.call('GET', lease)
      if holder == token then
        redis.call('PEXPIRE', lease, ARGV[2])
        held = 1
      elseif holder or retake ~= '1' then
        held = 0
      else
        redis.call('SET', lease, token, 'PX', ARGV[2])
        held = 2
      end
    end
    out[i + 1] = {alive, held}
  else
    local version = redis.call('HGET', header, 'version')
    out[i + 1] = {tonumber(version or '0'), redis.call('EXISTS', lease)}
  end
end
return out
"""
# Steps per script call; a tick's calls go in one pipeline. Bounds how long one call holds
# Redis (each step is a few commands).
STEPS_PER_CALL = 200
# What a step absent from the store reads as: it was deleted, so it has ended.
ENDED = StepState("stopped", 0)
# While a mirror has no version yet (its owner is still beginning), the tick comes this often.
EARLY_POLL_S = 0.05


@dataclass(eq=False)
class Owned:
    """A generation this worker writes, as the tick sees it."""

    gen: Shared
    lease: Lease
    away: bool = True  # "seen" is set, not checked, at the next tick: new, or Redis was away


@dataclass(frozen=True)
class Heard:
    """What the tick read of a mirrored step: its current version and whether it is leased."""

    version: int
    leased: bool


class Ticker:
    """One worker's tick. `abandon(gen)`: nobody anywhere watches a step written here;
    `lost(gen)`: another worker holds its lease now."""

    def __init__(
        self,
        redis: SharedRedis,
        store: Store,
        *,
        grace_s: float,
        lease_s: float,
        check_s: float,
        abandon: Callable[[Shared], None],
        lost: Callable[[Shared], None],
    ) -> None:
        self._redis = redis
        self._store = store
        self._grace_ms = max(1, int(grace_s * 1000))
        self._lease_ms = max(1, int(lease_s * 1000))
        self._renew_s = lease_s / 3
        self._check_s = check_s
        self._abandon = abandon
        self._lost = lost
        self._script = redis.client.register_script(TICK)
        self._owned: dict[Key, Owned] = {}
        self._mirrors: dict[Key, Shared] = {}
        self._heard: dict[Key, Heard] = {}  # the last tick's, for the mirrors waiting on it
        self._ticked = anyio.Event()  # set after each tick
        self._full = anyio.Event()  # set after each full tick (every check interval)
        self._wake = anyio.Event()
        self._checking = False  # a store check of the owned steps is under way
        self.ticks = 0  # round trips to Redis (the tests read it)

    def own(self, gen: Shared, lease: Lease) -> None:
        """Keep the lease and the step's "seen" key from the next tick on, until dropped."""
        self._owned[gen.key] = Owned(gen, lease)

    def drop(self, gen: Shared) -> None:
        if (owned := self._owned.get(gen.key)) is not None and owned.gen is gen:
            del self._owned[gen.key]
        if self._mirrors.get(gen.key) is gen:
            del self._mirrors[gen.key]

    async def hear(self, gen: Shared) -> Heard | None:
        """The next tick's word on a step mirrored here (None: it ended meanwhile, or Redis is
        away; the tick finishes it when the store says it ended). Its "seen" key is refreshed
        while it has viewers here."""
        if self._mirrors.get(gen.key) is not gen:
            self._mirrors[gen.key] = gen
            self._wake.set()
        while not gen.ended:
            # A mirror that has its version waits for the full tick only, not the early ones.
            await (self._full if gen.watched else self._ticked).wait()
            if gen.ended:
                break
            heard = self._heard.get(gen.key)
            if heard is not None:
                return heard
        return None

    async def run(self) -> None:
        full_at = 0.0
        renew_at = time.monotonic() + self._renew_s
        async with anyio.create_task_group() as tg:
            while True:
                now = time.monotonic()
                full = now >= full_at
                if full:
                    full_at = now + self._check_s
                renew = full and now >= renew_at
                if renew:
                    renew_at = now + self._renew_s
                try:
                    await self._tick(tg, full=full, renew=renew)
                except Exception:
                    # Never the app's task group down: the next tick tries again.
                    logger.warning("Broker tick failed", exc_info=True)
                wait = full_at - time.monotonic()
                if any(not gen.watched for gen in self._mirrors.values()):
                    wait = min(wait, EARLY_POLL_S)
                with anyio.move_on_after(max(0.0, wait)):
                    await self._wake.wait()  # a new mirror: its first tick at once
                if self._wake.is_set():
                    self._wake = anyio.Event()

    async def _tick(self, tg: anyio.abc.TaskGroup, *, full: bool, renew: bool) -> None:
        owned = [o for o in self._owned.values() if not o.gen.ended] if full else []
        mirrors = [g for g in self._mirrors.values() if not g.ended and (full or not g.watched)]
        if not owned and not mirrors:
            return
        keys: list[str] = []
        args: list[str | int] = []
        for o in owned:
            refresh = o.away or o.gen.viewers > 0 or o.gen.touched
            o.gen.touched = False
            token = o.lease.token if renew else ""
            keys += _keys(o.gen.key)
            args += ["o", int(refresh), token, "0" if o.lease.sure else "1"]
        for gen in mirrors:
            refresh = gen.viewers > 0 or gen.touched
            gen.touched = False
            keys += _keys(gen.key)
            args += ["m", int(refresh), "", "0"]
        self.ticks += 1
        try:
            answers = await self._redis.call(lambda: self._send(keys, args))
        except UNAVAILABLE:
            await self._away(tg, owned, mirrors, full=full, renew=renew)
            return
        held: list[tuple[Owned, int]] = []
        for o, (alive, renewed) in zip(owned, answers, strict=False):
            o.away = False
            if o.gen.ended:
                continue
            if not alive:
                self._abandon(o.gen)
            elif renew:
                o.lease.sure = renewed != 0
                if not renewed:
                    self._lost(o.gen)
                else:
                    held.append((o, int(renewed)))
        self._heard = {
            gen.key: Heard(int(version), bool(leased))
            for gen, (version, leased) in zip(mirrors, answers[len(owned) :], strict=False)
        }
        self._signal(full=full)
        if held:
            self._check(tg, held)

    async def _away(
        self,
        tg: anyio.abc.TaskGroup,
        owned: list[Owned],
        mirrors: list[Shared],
        *,
        full: bool,
        renew: bool,
    ) -> None:
        """Redis is away: each step written here sets its "seen" key again once it is back
        (the viewers elsewhere get a grace period to say so again), its lease is unknown (the
        store's version fences every write meanwhile) and the store is read all the same at
        the renewal; a mirrored step ends here once the store says it ended."""
        for o in owned:
            o.away = True
            o.lease.sure = False
        if renew and owned:
            self._check(tg, [(o, HELD) for o in owned])
        if not full:
            return self._signal(full=full)
        states: dict[Key, StepState | None]
        try:
            states = dict(await self._store.step_states([gen.key for gen in mirrors]))
        except Exception:
            states = {gen.key: None for gen in mirrors}  # the database away too: keep waiting
        for gen in mirrors:
            state = states.get(gen.key, ENDED)
            if not gen.ended and state is not None and state.status != "generating":
                gen.finish()
        self._heard = {}
        self._signal(full=full)

    def _signal(self, *, full: bool) -> None:
        """Wake the mirrors waiting for this tick's word."""
        self._ticked.set()
        self._ticked = anyio.Event()
        if full:
            self._full.set()
            self._full = anyio.Event()

    def _check(self, tg: anyio.abc.TaskGroup, held: list[tuple[Owned, int]]) -> None:
        """Read the steps written here from the store (one query) beside the tick, so that a
        busy database never holds up the next renewal; a check still under way is not doubled."""
        if not self._checking:
            self._checking = True
            tg.start_soon(self._read_store, held, name="broker store check")

    async def _read_store(self, held: list[tuple[Owned, int]]) -> None:
        """Stopped, rewound or deleted steps end here (a lost stop announcement delays a stop,
        never loses it); a step whose lease lapsed and was written elsewhere meanwhile is lost."""
        try:
            # Within one renewal period: a request may queue for a connection many seconds.
            with anyio.fail_after(self._renew_s):
                states = await self._store.step_states([o.gen.key for o, _ in held])
        except Exception:
            # The database away for a moment must not end a step that is being written.
            logger.warning("Steps not read at lease renewal", exc_info=True)
            return
        finally:
            self._checking = False
        for o, renewed in held:
            gen = o.gen
            if gen.ended or not gen.ready.is_set() or gen.version == gen.stale:
                continue
            state = states.get(gen.key)
            if state is None or state.status != "generating":
                # The viewers get what the step is now.
                gen.finish()
                gen.cancel_scope.cancel()
            elif renewed == RETAKEN and state.version != gen.version:
                # The lease had lapsed and another worker wrote the step meanwhile. (With the
                # lease held throughout, a newer version is this worker's own replaced text.)
                self._lost(gen)

    async def _send(self, keys: list[str], args: list[str | int]) -> list[Any]:
        calls = []
        for at in range(0, len(keys) // 3, STEPS_PER_CALL):
            part_args = args[4 * at : 4 * (at + STEPS_PER_CALL)]
            part_keys = keys[3 * at : 3 * (at + STEPS_PER_CALL)]
            calls.append((part_keys, [self._grace_ms, self._lease_ms, *part_args]))
        answers: list[Any] = []
        for part in await run_scripts(self._redis, self._script, calls):
            answers += part
        return answers


def _keys(key: Key) -> list[str]:
    keys = StepKeys(key)
    return [keys.seen, keys.lease, keys.header]


async def run_scripts(
    redis: SharedRedis,
    script: AsyncScript,
    calls: Sequence[tuple[Sequence[str], Sequence[str | int]]],
) -> list[Any]:
    """Each (keys, args) call of `script`, all in one round trip; what each returned. Not
    redis-py's script-in-pipeline, which asks SCRIPT EXISTS first: one more round trip each time."""
    if len(calls) == 1:
        keys, args = calls[0]
        return [await script(keys=keys, args=args)]  # loads it if Redis lost it
    for attempt in (1, 2):
        async with redis.client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                return list(await pipe.execute())
            except NoScriptError:
                if attempt == 2:
                    raise
        script.sha = await redis.client.script_load(script.script)
    raise AssertionError("unreachable")
