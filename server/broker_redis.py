"""The distributed generation broker: one writer per step across every worker (a lease fenced by
the store's version), its text fanned out through one Redis Stream per (session, step, version)
to local mirrors that `streaming.follow` reads unchanged (DESIGN section 11)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup

from server.broker_lease_redis import Lease, Leases
from server.broker_publish_redis import Publisher
from server.broker_stops_redis import (
    Stop,
    after_writer,
    announce,
    ends_at_once,
    forget,
    hand_back,
    heard,
    listen,
)
from server.broker_stream_redis import Reader, Shared, StepKeys, streamed
from server.broker_tick_redis import Ticker
from server.shared_redis import UNAVAILABLE, SharedRedis
from server.store import Store, Unavailable
from server.streaming import Generation, Key, Render, Visible, Work

logger = logging.getLogger("crossroads")


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
        on_takeover: Callable[[], None] = lambda: None,
    ) -> None:
        self._tg = task_group
        self._redis = redis
        self._store = store
        self._grace_s = grace_s
        # Takeover within lease + this; stops come by pub/sub, this only bounds a lost message.
        self.check_s = min(0.5, lease_s / 3)
        self._on_abandon = on_abandon
        self._on_takeover = on_takeover
        self._local: dict[Key, Shared] = {}
        self._origin = secrets.token_hex(4)  # in its announcements: it ignores its own
        self._reader = Reader(redis, on_end=self._writer_ended)
        self._leases = Leases(redis, lease_s)
        # Every lease, "seen" key and mirrored header of this worker in one round trip.
        self._ticker = Ticker(
            redis,
            store,
            grace_s=grace_s,
            lease_s=lease_s,
            check_s=self.check_s,
            abandon=self._abandon,
            lost=self._lost,
        )
        self._publisher = Publisher(
            redis,
            store,
            frame_s=frame_s,
            live_ttl_s=live_ttl_s,
            check_s=self.check_s,
            lost=self._lost,
        )
        self.abandoned = 0
        self.started = 0
        self.takeovers = 0

    async def run(self) -> None:
        """The worker's one stream reader, its one tick and its one stop listener (run in the
        task group)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._reader.run, name="broker stream reader")
            tg.start_soon(self._ticker.run, name="broker tick")
            tg.start_soon(self._publisher.run, name="broker frame tick")
            tg.start_soon(listen, self._redis, self._heard, name="broker stop listener")

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
            running.again = not running.owned  # its writer's end does not end it now
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
        stop = Stop(session_id, n, following, deleted, origin=self._origin)
        self._end_local(stop)
        self._tg.start_soon(self._announce, stop, name="announce stop")

    # Single flight: own the step, or mirror its owner and take over when its lease is gone.

    async def _run(self, gen: Shared, work: Work) -> None:
        keys = StepKeys(gen.key)
        lease = self._leases.of(keys)
        try:
            while not gen.ended:
                if await _acquire(lease):
                    await self._own(gen, work, lease)
                    return
                await self._mirror(gen, keys)
        except Exception as exc:
            fields = {"session_id": gen.key[0], "step": gen.key[1]}
            if _database_away(exc):
                # Not a fault of this code: the step stays `generating` in the store and is
                # written again (a new version) when a viewer asks for it once it is back.
                logger.warning(
                    "Generation ended: the database is unreachable",
                    extra={"fields": {**fields, "error": str(exc)}},
                )
            else:
                logger.exception("Generation failed", extra={"fields": fields})
        finally:
            self._reader.unwatch(gen)
            self._ticker.drop(gen)
            if not gen.ended:
                gen._end()
            if self._local.get(gen.key) is gen:
                del self._local[gen.key]
            if gen.forgotten:
                # After its last frame and its lease's release: nothing of it comes back.
                await forget(self._redis, gen.key[0])

    async def _mirror(self, gen: Shared, keys: StepKeys) -> None:
        """Follow the owner's stream until the step ends or its lease is gone (then return, so
        that this worker tries to take the step over). The worker's tick reads the step's
        header; while Redis is away it finishes the mirror once the store says the step ended
        (its writer falls back once its model slot's lease lapses)."""
        gen.owned = False
        try:
            while not gen.ended:
                heard = await self._ticker.hear(gen)
                if heard is None:
                    continue
                if not heard.leased:
                    return
                if heard.version and heard.version not in (gen.watched, gen.ended_version):
                    gen.ended_version, gen.again = 0, False
                    try:
                        await self._reader.watch(gen, keys, heard.version)
                    except UNAVAILABLE:
                        gen.watched = 0  # read from its start at the next tick
        finally:
            self._ticker.drop(gen)

    async def _own(self, gen: Shared, work: Work, lease: Lease) -> None:
        taken_over = gen.ready.is_set()
        gen.published = (0, 0)
        if taken_over:
            # A takeover: the step is written again from nothing under the version the work
            # begins (Shared.start); nothing is published or checked under the old one, whose
            # text (all in Redis) its viewers keep meanwhile.
            self._reader.unwatch(gen)
            gen.stale = gen.version
            gen.published = (gen.version, len(gen.text))
        gen.owned = True
        gen._cancel_grace()
        self.started += 1
        # Its lease renewed, its "seen" key set at once then checked, and the store read at
        # each renewal (a lost stop announcement delays a stop, never loses it): by the tick.
        self._ticker.own(gen, lease)
        published = anyio.Event()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._publisher.publish, gen, lease, published)
                tg.start_soon(hand_back, gen, lease.release, published)
                if taken_over and not gen.ended_version:
                    tg.start_soon(self._note_takeover, gen)
                try:
                    with gen.cancel_scope:
                        await work(gen)
                finally:
                    if not gen.ended:
                        # Never begun (the step was done or stopped meanwhile): the store says
                        # what it is. Begun and not finished: the viewers reconnect and find out.
                        begun = gen.ready.is_set() and gen.version != gen.stale
                        gen._end() if begun else gen.finish()
                    with anyio.move_on_after(2, shield=True):
                        await published.wait()
                    tg.cancel_scope.cancel()
        finally:
            self._ticker.drop(gen)
            # Also when the worker shuts down (SIGTERM cancels everything): the step's lease is
            # handed back at once, so a worker with viewers takes it over now, not a lease later.
            await lease.release()

    async def _note_takeover(self, gen: Shared) -> None:
        """Said once the work begins the step again (not when it finds the step finished): a
        worker died, or was paused or cut off past its lease."""
        while not gen.ended and gen.version == gen.stale:
            await gen.changed.wait()
        if gen.ended:
            return
        self.takeovers += 1
        self._on_takeover()
        logger.info(
            "Step taken over",
            extra={
                "fields": {
                    "session_id": gen.key[0],
                    "step": gen.key[1],
                    "version": gen.version,
                    "previous_version": gen.stale,
                }
            },
        )

    def _abandon(self, gen: Shared) -> None:
        self.abandoned += 1
        self._on_abandon()
        gen._end()
        gen.cancel_scope.cancel()

    def _lost(self, gen: Shared) -> None:
        """Another worker holds the lease now: this one stops writing; its viewers reconnect
        and follow the new owner."""
        if gen.ended:
            return  # found by the renewal and by a frame at once: said once
        logger.warning(
            "Generation lease lost",
            extra={"fields": {"session_id": gen.key[0], "step": gen.key[1]}},
        )
        gen._end()
        gen.cancel_scope.cancel()

    # Stop, delete, rewind: announced to every worker.

    def _writer_ended(self, gen: Shared) -> None:
        """A mirror read its writer's end: the store says whether the step ended with it, or
        this worker writes it once the lease is free (the mirror finds it free and takes it)."""
        self._tg.start_soon(after_writer, self._store, gen, name="writer ended")

    def _heard(self, stop: Stop) -> None:
        """Another worker's announcement (this one's own ended its generations already)."""
        if stop.origin == self._origin:
            return
        for gen in list(self._local.values()):
            if stop.ends(gen.key) and not gen.ended:
                if ends_at_once(gen):
                    _end_now(gen, deleted=stop.deleted)
                else:
                    self._tg.start_soon(self._end_if_told, gen, stop, name="stop heard")

    async def _end_if_told(self, gen: Shared, stop: Stop) -> None:
        if await heard(self._store, gen) and not gen.ended:
            _end_now(gen, deleted=stop.deleted)

    def _end_local(self, stop: Stop) -> None:
        for gen in list(self._local.values()):
            if stop.ends(gen.key) and not gen.ended:
                _end_now(gen, deleted=stop.deleted)

    async def _announce(self, stop: Stop) -> None:
        await announce(self._redis, stop)
        if stop.deleted:
            await forget(self._redis, stop.session_id)


def _end_now(gen: Shared, *, deleted: bool) -> None:
    gen.forgotten = deleted
    gen.finish()
    gen.cancel_scope.cancel()


async def _acquire(lease: Lease) -> bool:
    """The step's lease (set if absent); True as well when Redis is away: then this worker
    writes the step alone (the store's version fences every write) and claims the lease when
    Redis is back (Lease.renew)."""
    try:
        return await lease.acquire()
    except UNAVAILABLE:
        return True


def _database_away(exc: Exception) -> bool:
    """Whether `exc` is the store's Unavailable, alone or as all of a task group's errors."""
    if isinstance(exc, ExceptionGroup):
        _, rest = exc.split(Unavailable)
        return rest is None
    return isinstance(exc, Unavailable)
