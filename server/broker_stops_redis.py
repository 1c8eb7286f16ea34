"""Stop, rewind and delete across the workers of the distributed broker: recorded in the
database first, then announced on one pub/sub channel to every worker (the owner of a step
also re-reads the store at each lease renewal, so a lost message delays a stop, never loses
it); a deleted session's keys are removed at once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from server.broker_stream_redis import PREFIX
from server.shared_redis import SharedRedis
from server.streaming import Key

logger = logging.getLogger("crossroads")
CHANNEL = "crossroads:gen:stop"


@dataclass(frozen=True)
class Stop:
    """Step n of a session (and every later one, if `following`) changed in the store; when
    `deleted`, the session is gone and so must be its keys."""

    session_id: str
    n: int
    following: bool = False
    deleted: bool = False

    def message(self) -> str:
        return f"{self.session_id} {self.n} {int(self.following)} {int(self.deleted)}"

    @classmethod
    def parse(cls, data: object) -> Stop | None:
        parts = str(data).split()
        if len(parts) not in (3, 4) or not parts[1].lstrip("-").isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2] == "1", parts[3:] == ["1"])

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
