"""Stop, rewind and delete across the workers of the distributed broker: recorded in the
database first, then announced on one pub/sub channel to every worker (the owner of a step
also re-reads the store at each lease renewal, so a lost message delays a stop, never loses
it); a deleted session's keys are removed at once.

A step stopped and written again at once (or left by a writer that went away) is not ended by
what its old writer said: an announcement heard late, or the old version's end read by a
mirror, ends a generation only if the store says the step ended."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from server.broker_stream_redis import PREFIX, Shared
from server.shared_redis import SharedRedis
from server.store import Store
from server.streaming import Key

logger = logging.getLogger("crossroads")
CHANNEL = "crossroads:gen:stop"
# What a step is once nobody writes it again until a person asks.
FINAL = ("done", "stopped")


@dataclass(frozen=True)
class Stop:
    """Step n of a session (and every later one, if `following`) changed in the store; when
    `deleted`, the session is gone and so must be its keys. `origin`: the worker that
    announced it (it ended its own generations at once, and ignores its announcement)."""

    session_id: str
    n: int
    following: bool = False
    deleted: bool = False
    origin: str = ""

    def message(self) -> str:
        flags = f"{int(self.following)} {int(self.deleted)}"
        return f"{self.session_id} {self.n} {flags} {self.origin}".rstrip()

    @classmethod
    def parse(cls, data: object) -> Stop | None:
        parts = str(data).split()
        if len(parts) not in (3, 4, 5) or not parts[1].lstrip("-").isdigit():
            return None
        origin = parts[4] if len(parts) == 5 else ""
        return cls(parts[0], int(parts[1]), parts[2] == "1", parts[3:4] == ["1"], origin)

    def ends(self, key: Key) -> bool:
        sid, step = key
        return sid == self.session_id and (step == self.n or (self.following and step > self.n))


async def announce(redis: SharedRedis, stop: Stop) -> None:
    message = stop.message()
    try:
        await redis.call(lambda: redis.client.publish(CHANNEL, message))
    except Exception:
        # The owner reads the store at its next lease renewal.
        logger.warning("Stop not announced to the other workers", exc_info=True)


async def listen(redis: SharedRedis, on_stop: Callable[[Stop], None]) -> None:
    """The worker's one stop listener (runs in its task group for good)."""
    failing = False  # said once while Redis is away, not at every retry
    while True:
        pubsub = redis.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            if failing:
                failing = False
                logger.info("Stop listener listening again")
            while True:
                message = await pubsub.get_message(timeout=1.0)
                stop = Stop.parse(message["data"]) if message else None
                if stop is not None:
                    on_stop(stop)
        except Exception as exc:
            # Never the app's task group down: stops still arrive through the store.
            if not failing:
                failing = True
                logger.warning(
                    "Stop listener failed; listening again",
                    extra={"fields": {"error": str(exc) or type(exc).__name__}},
                )
            await anyio.sleep(1.0)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


async def forget(redis: SharedRedis, session_id: str) -> None:
    """Remove a deleted session's keys (its steps' headers, streams and "seen" keys) at once.
    A lease is left to its holder, which releases it once it has heard of the deletion and
    told its viewers (gone sooner, the holder's next frame would fail as a lost lease and they
    would reconnect instead of getting `done`); a dead holder's lease expires."""

    async def scan_and_unlink() -> None:
        found: list[str] = []
        # Session ids are URL-safe tokens: nothing in them is a glob pattern.
        async for key in redis.client.scan_iter(match=f"{PREFIX}{session_id}:*", count=1000):
            if not str(key).endswith(":lease"):
                found.append(str(key))
        if found:
            await redis.client.unlink(*found)

    with anyio.CancelScope(shield=True), anyio.move_on_after(2):
        try:
            await redis.call(scan_and_unlink)
        except Exception:
            # They expire (minutes after the end); the session is gone from the database.
            logger.warning("Keys of a deleted session not removed", exc_info=True)


def ends_at_once(gen: Shared) -> bool:
    """Whether a stop announced by another worker ends this generation at once, while it
    writes or follows the text the stop is about (its viewers are shown no more than the stop
    kept), or once the store says so (`heard`): when it may have been started after the stop
    (still beginning, its writer already ended, or asked for again)."""
    if gen.owned:
        return gen.ready.is_set() and gen.version != gen.stale
    return bool(gen.watched) and not gen.again


async def heard(store: Store, gen: Shared) -> bool:
    """A stop announced by another worker: whether it ends this generation, which may have
    been started after the stop. The store decides: a writer ends (once it has begun) when the
    step is no longer `generating`; a mirror when the step is done, stopped or gone and nobody
    asked for it again since (else it follows whoever writes it). The database away: it ends
    (its viewers reconnect and get what the step is then)."""
    while gen.owned and not gen.ended and (not gen.ready.is_set() or gen.version == gen.stale):
        await gen.changed.wait()  # its beginning finds out first
    if gen.ended:
        return False
    try:
        step = await store.step(*gen.key)
    except Exception:
        return True
    if step is None:
        return True
    if gen.owned:
        return step.status != "generating"
    return step.status in FINAL and not gen.again


async def after_writer(store: Store, gen: Shared) -> None:
    """A mirror read its writer's end. The step ended with it (done, stopped or gone): its
    viewers get it from the store now. Else (stopped then "Write it again" at once, or left
    `generating` by a writer that went away) the mirror takes it once its lease is free, and
    the work begins a new version or finds the step finished; so too when it was asked for
    again (a start) meanwhile, whatever the store said a moment before, or when the database
    does not answer (the work finds out)."""
    version = gen.ended_version
    try:
        step = await store.step(*gen.key)
    except Exception:
        return
    if gen.ended or gen.owned or gen.ended_version != version:
        return  # ended, taken or followed on meanwhile
    if (step is None or step.status in FINAL) and not gen.again:
        gen.finish()


async def hand_back(gen: Shared, release: Callable[[], Awaitable[None]], said: anyio.Event) -> None:
    """A writer's lease goes as soon as its generation has ended and said so (`said`), even
    while its work still winds down: a start of the step meanwhile writes it at once (the
    store's version fences whatever the old work still does)."""
    while not gen.ended:
        await gen.changed.wait()
    await said.wait()
    await release()
