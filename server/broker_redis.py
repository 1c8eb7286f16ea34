"""The distributed generation broker: one writer per step across every worker (a lease fenced by
the store's version), its text fanned out through one Redis Stream per (session, step, version)
to local mirrors that `streaming.follow` reads unchanged (DESIGN section 11)."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from server.broker_stops_redis import Stop, announce, forget, listen
from server.broker_stream_redis import (
    DONE_TTL_S,
    Reader,
    Shared,
    StepKeys,
    header,
    streamed,
)
from server.shared_redis import UNAVAILABLE, SharedRedis
from server.store import Store
from server.streaming import Generation, Key, Render, Visible, Work

logger = logging.getLogger("crossroads")
# While no version is known yet (the owner is still beginning), a mirror asks this often.
EARLY_POLL_S = 0.05

# Writes fenced by the lease: the frame is appended only while `token` holds the step's lease,
# so an owner that was paused past its lease changes nothing in Redis either. ARGV[5] = "1"
# when the version is new (the header names it; the old version's stream, ARGV[6] its entry id
# or "", tells its readers where the text went).
PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[5] == '1' then
  redis.call('HSET', KEYS[3], 'version', ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
  if ARGV[6] ~= '' then
    redis.call('XADD', KEYS[4], ARGV[6], 'v', ARGV[4])
    redis.call('PEXPIRE', KEYS[4], ARGV[3])
  end
end
redis.call('XADD', KEYS[2], ARGV[2], unpack(ARGV, 7))
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if ARGV[5] ~= '1' then redis.call('PEXPIRE', KEYS[3], ARGV[3]) end
return 1
"""
RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisBroker:
    """The Broker of the distributed backend, one per worker. `_local` holds this worker's
    generations of either kind: the ones it writes (owned) and mirrors of ones written elsewhere."""

    def __init__(
        self,
        task_group: TaskGroup,
        redis: SharedRedis,
        store: Store,
        *,
        grace_s: float,
        lease_s: float,
        frame_s: float,
        live_ttl_s: float,
        on_abandon: Callable[[], None] = lambda: None,
    ) -> None:
        self._tg = task_group
        self._redis = redis
        self._store = store
        self._grace_s = grace_s
        self._lease_ms = max(1, int(lease_s * 1000))
        self._renew_s = lease_s / 3
        # Takeover within lease + this; stops come by pub/sub, this only bounds a lost message.
        self.check_s = min(0.5, lease_s / 3)
        self._frame_s = frame_s
        self._live_ttl_ms = int(live_ttl_s * 1000)
        self._on_abandon = on_abandon
        self._local: dict[Key, Shared] = {}
        self._reader = Reader(redis)
        self._publish = redis.client.register_script(PUBLISH)
        self._renew = redis.client.register_script(RENEW)
        self._release = redis.client.register_script(RELEASE)
        self.abandoned = 0
        self.started = 0

    async def run(self) -> None:
        """The worker's one stream reader and its one stop listener (run in the task group)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._reader.run, name="broker stream reader")
            tg.start_soon(listen, self._redis, self._end_local, name="broker stop listener")

    # The Broker interface.

    def __len__(self) -> int:
        # The generations this worker writes: summed over the workers, each step counts once.
        return sum(1 for gen in self._local.values() if gen.owned)

    def get(self, key: Key) -> Generation | None:
        return self._local.get(key)

    def all(self) -> list[Generation]:
        return list(self._local.values())

    def viewers(self) -> int:
        return sum(gen.viewers for gen in self._local.values())

    async def streamed(self, key: Key) -> str:
        """The owner's text if it runs here; else what Redis holds of the step's current
        version (a mirror here may be a frame behind), or the mirror's when Redis is away."""
        gen = self._local.get(key)
        if gen is not None and gen.owned and not gen.ended:
            return gen.text
        local = gen.text if gen is not None and not gen.ended else ""
        try:
            return await self._redis.call(lambda: streamed(self._redis, StepKeys(key))) or local
        except UNAVAILABLE:
            return local

    def start(
        self, key: Key, work: Work, *, visible: Visible = len, render: Render | None = None
    ) -> Generation:
        running = self._local.get(key)
        if running is not None and not running.ended:
            running.touch()
            return running
        gen = Shared(
            key, grace_s=self._grace_s, on_abandon=lambda _: None, visible=visible, render=render
        )
        self._local[key] = gen
        self._tg.start_soon(self._run, gen, work, name=f"generation {key[0]}/{key[1]}")
        return gen

    def release_viewers(self) -> None:
        for gen in list(self._local.values()):
            gen.released = True
            gen._notify()

    def end(
        self, session_id: str, n: int, *, following: bool = False, deleted: bool = False
    ) -> None:
        """The store changed these steps (stopped, rewound, deleted): their generations end on
        this worker now and, through the announcement, on whichever worker writes them; a
        deleted session's keys are removed."""
        stop = Stop(session_id, n, following, deleted)
        self._end_local(stop)
        self._tg.start_soon(self._announce, stop, name="announce stop")

    # Single flight: own the step, or mirror its owner and take over when its lease is gone.

    async def _run(self, gen: Shared, work: Work) -> None:
        keys = StepKeys(gen.key)
        token = secrets.token_hex(8)
        try:
            while not gen.ended:
                if await self._acquire(keys, token):
                    await self._own(gen, work, keys, token)
                    return
                await self._mirror(gen, keys)
        except Exception:
            logger.exception(
                "Generation failed",
                extra={"fields": {"session_id": gen.key[0], "step": gen.key[1]}},
            )
        finally:
            self._reader.unwatch(gen)
            if not gen.ended:
                gen._end()
            if self._local.get(gen.key) is gen:
                del self._local[gen.key]
            if gen.forgotten:
                # After its last frame and its lease's release: nothing of it comes back.
                await forget(self._redis, gen.key[0])

    async def _acquire(self, keys: StepKeys, token: str) -> bool:
        """The step's lease (set if absent); True as well when Redis is away: then this worker
        writes the step alone, and the store's version still fences every write."""
        try:
            got = await self._redis.call(
                lambda: self._redis.client.set(keys.lease, token, nx=True, px=self._lease_ms)
            )
        except UNAVAILABLE:
            return True
        return bool(got)

    async def _mirror(self, gen: Shared, keys: StepKeys) -> None:
        """Follow the owner's stream until the step ends or its lease is gone (then return, so
        that this worker tries to take the step over)."""
        gen.owned = False
        while not gen.ended:
            try:
                version, leased = await self._redis.call(lambda: header(self._redis, keys))
                if not leased:
                    return
                if version and version != gen.watched:
                    await self._reader.watch(gen, keys, version)
                await self._refresh_seen(gen, keys)
            except UNAVAILABLE:
                pass
            await _sleep_until_ended(gen, self.check_s if gen.watched else EARLY_POLL_S)

    async def _own(self, gen: Shared, work: Work, keys: StepKeys, token: str) -> None:
        if gen.ready.is_set():
            # A takeover: the step is written again from nothing under the version it begins;
            # nothing is published or checked under the old one.
            self._reader.unwatch(gen)
            gen.replace("", gen.version)
            gen.stale = gen.version
        gen.owned = True
        gen.published = (0, 0)
        gen._cancel_grace()
        self.started += 1
        with contextlib.suppress(*UNAVAILABLE):
            await self._refresh_seen(gen, keys, force=True)
        published = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._keep, gen, keys, token)
            tg.start_soon(self._publisher, gen, keys, token, published)
            try:
                with gen.cancel_scope:
                    await work(gen)
            finally:
                if not gen.ended:
                    # Never begun (the step was done or stopped meanwhile): the store says what
                    # it is. Begun and not finished: the viewers reconnect and find out.
                    begun = gen.ready.is_set() and gen.version != gen.stale
                    gen._end() if begun else gen.finish()
                with anyio.move_on_after(2, shield=True):
                    await published.wait()
                tg.cancel_scope.cancel()
        with (
            anyio.CancelScope(shield=True),
            anyio.move_on_after(2),
            contextlib.suppress(*UNAVAILABLE),
        ):
            await self._redis.call(lambda: self._release(keys=[keys.lease], args=[token]))

    async def _keep(self, gen: Shared, keys: StepKeys, token: str) -> None:
        """Renew the lease, keep the step alive while anyone watches it anywhere, and read the
        store at each renewal: a lost stop announcement delays a stop, never loses it."""
        renew_at = time.monotonic() + self._renew_s
        while not gen.ended:
            await anyio.sleep(self.check_s)
            try:
                if not await self._refresh_seen(gen, keys):
                    self._abandon(gen)
                    return
                if time.monotonic() < renew_at:
                    continue
                renew_at = time.monotonic() + self._renew_s
                held = await self._redis.call(
                    lambda: self._renew(keys=[keys.lease], args=[token, self._lease_ms])
                )
            except UNAVAILABLE:
                continue
            if not held:
                self._lost(gen)
                return
            try:
                step = await self._store.step(*gen.key)
            except Exception:
                # The database away for a moment must not end a step that is being written.
                logger.warning("Step not read at lease renewal", exc_info=True)
                continue
            if (
                gen.ready.is_set()
                and gen.version != gen.stale
                and (step is None or step.status != "generating" or step.version != gen.version)
            ):
                gen.finish()
                gen.cancel_scope.cancel()
                return

    async def _refresh_seen(self, gen: Shared, keys: StepKeys, *, force: bool = False) -> bool:
        """Someone here watches (or looked at) the step: it stays alive for another grace period.
        Returns whether anyone anywhere still does (the owner abandons the step when not)."""
        grace_ms = max(1, int(self._grace_s * 1000))
        if force or gen.viewers or gen.touched:
            gen.touched = False
            await self._redis.call(lambda: self._redis.client.set(keys.seen, "1", px=grace_ms))
            return True
        return bool(await self._redis.call(lambda: self._redis.client.exists(keys.seen)))

    def _abandon(self, gen: Shared) -> None:
        self.abandoned += 1
        self._on_abandon()
        gen._end()
        gen.cancel_scope.cancel()

    def _lost(self, gen: Shared) -> None:
        """Another worker holds the lease now: this one stops writing; its viewers reconnect
        and follow the new owner."""
        logger.warning(
            "Generation lease lost",
            extra={"fields": {"session_id": gen.key[0], "step": gen.key[1]}},
        )
        gen._end()
        gen.cancel_scope.cancel()

    async def _publisher(
        self, gen: Shared, keys: StepKeys, token: str, published: anyio.Event
    ) -> None:
        """One entry per frame with the text added since the last one (first text at once),
        a new stream per version; the last entry says how the generation ended."""
        try:
            while not gen.ended and (not gen.ready.is_set() or gen.version == gen.stale):
                await gen.changed.wait()
            version, sent, status = 0, 0, ""
            while True:
                changed = gen.changed
                text, ended = gen.text, gen.ended
                fields: list[str] = []
                old, marker = keys.stream(version or gen.version), ""
                new_version = gen.version != version
                if new_version:
                    # Readers of the old version's stream learn where the text went.
                    marker = f"{sent}-*" if version else ""
                    version, sent = gen.version, 0
                if len(text) > sent or new_version:
                    fields += ["t", text[sent:]]
                if gen.status != status or new_version:
                    status = gen.status
                    fields += ["s", status]
                if ended:
                    fields += ["e", "finished" if gen.finished else "ended"]
                if fields:
                    ttl = DONE_TTL_S * 1000 if ended else self._live_ttl_ms
                    head: list[str | int] = [token, f"{len(text)}-*", ttl, version]
                    head += ["1" if new_version else "0", marker, *fields]
                    step_keys = [keys.lease, keys.stream(version), keys.header, old]
                    ok = await self._append(step_keys, head)
                    if not ok:
                        self._lost(gen)
                        return
                    sent = len(text)
                    gen.published = (version, sent)
                    gen._notify()
                if ended:
                    return
                await changed.wait()
                if self._frame_s > 0 and sent > 0 and not gen.ended:
                    await anyio.sleep(self._frame_s)
        except UNAVAILABLE:
            # Nobody elsewhere can follow now; this worker's viewers still read the generation.
            logger.warning("Generation not published: Redis is unreachable", exc_info=True)
            gen.published = None
            gen._notify()
        finally:
            published.set()

    async def _append(self, step_keys: list[str], args: list[str | int]) -> bool:
        return bool(await self._redis.call(lambda: self._publish(keys=step_keys, args=args)))

    # Stop, delete, rewind: announced to every worker.

    def _end_local(self, stop: Stop) -> None:
        for gen in list(self._local.values()):
            if stop.ends(gen.key) and not gen.ended:
                gen.forgotten = stop.deleted
                gen.finish()
                gen.cancel_scope.cancel()

    async def _announce(self, stop: Stop) -> None:
        await announce(self._redis, stop)
        if stop.deleted:
            await forget(self._redis, stop.session_id)


async def _sleep_until_ended(gen: Generation, seconds: float) -> None:
    with anyio.move_on_after(seconds):
        while not gen.ended:
            await gen.changed.wait()
