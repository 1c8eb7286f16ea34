"""The read side of the distributed broker: the Redis keys of a step, the local mirror of a
generation written elsewhere, and the worker's one reader task that feeds every mirror."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio

from server.shared_redis import UNAVAILABLE, SharedRedis
from server.streaming import Generation, Key

logger = logging.getLogger("crossroads")
PREFIX = "crossroads:gen:"
# How long a finished step's stream stays (a viewer that reconnects late still resumes).
DONE_TTL_S = 300
# One XREAD blocks this long (below the client's 2 s socket timeout). A stream newly watched
# is read at once by `watch` and joins the next XREAD: this bounds how late its next entry can
# be while the other streams are quiet (an idle worker asks four times a second).
READ_BLOCK_MS = 250
# Streams at most this many per XREAD; more are read in turns.
MAX_STREAMS = 1000
# The status of a step taken over, until its new text comes: why the text started again.
TAKEN_OVER = "The server writing this went away; writing it again"


@dataclass(frozen=True)
class StepKeys:
    """A step's keys: its header hash (the current version), its lease, the "seen" key that
    workers with viewers refresh, and one stream per version."""

    key: Key

    @property
    def header(self) -> str:
        return f"{PREFIX}{self.key[0]}:{self.key[1]}"

    @property
    def lease(self) -> str:
        return f"{self.header}:lease"

    @property
    def seen(self) -> str:
        return f"{self.header}:seen"

    def stream(self, version: int) -> str:
        return f"{self.header}:v{version}"


class Shared(Generation):
    """A generation of the distributed broker: written here (`owned`) or mirrored from the
    stream of the worker that writes it. An owned one has no local grace timer: the owner
    abandons it when no worker has refreshed its "seen" key for a grace period."""

    owned = False
    touched = False  # a page view since the last refresh of the "seen" key
    watched = 0  # the version whose stream this mirror follows (0: none)
    stale = 0  # a taken-over step's old version: nothing is published or checked under it
    replacing = False  # the next entry read starts a new version: its text replaces this one's
    forgotten = False  # its session was deleted: its keys go when it ends
    restarting = False  # taken over and begun again: TAKEN_OVER stays until text comes
    # A mirror: the version whose writer said it ended (0: none). The store says whether the
    # step ended with it or is written again (broker_stops_redis.after_writer).
    ended_version = 0
    again = False  # asked for again (a start) after its writer ended: written, not ended

    # Owned: how much of which version Redis has. Viewers here are shown no more, so that any
    # event id they hold can be resumed on any worker. None: not limited (Redis is away).
    published: tuple[int, int] | None = None
    # Owned: the worker's publisher is told of every change (Publisher._mark).
    on_change: Callable[[], None] | None = None

    @property
    def shown(self) -> int:
        end = super().shown
        if not self.owned or self.published is None or self.ended:
            return end
        version, length = self.published
        return min(end, length) if version == self.version else 0

    def touch(self) -> None:
        self.touched = True
        super().touch()

    def start(self, version: int) -> None:
        if self.stale and version != self.stale:
            # Taken and begun again: the old version's text goes now, not when the step was
            # taken (a step found finished then keeps its text for its viewers).
            self.replace("", version)
            if not self.ended_version:
                # Its writer went away unfinished: its viewers everywhere (the status goes out
                # with the new version's first entry) are told why the text restarts.
                self.status = TAKEN_OVER
                self.restarting = True
        super().start(version)

    def set_status(self, status: str) -> None:
        # "writing" says nothing new until the text comes; a queue or retry status does.
        if not (self.restarting and status == "writing"):
            super().set_status(status)

    def append(self, text: str) -> None:
        if text and self.restarting:
            self.restarting = False
            self.status = "writing"
        super().append(text)

    def replace(self, text: str, version: int) -> None:
        if text:
            self.restarting = False  # its own status said what the new text is
        super().replace(text, version)

    def _notify(self) -> None:
        super()._notify()
        if self.on_change is not None:
            self.on_change()

    def _schedule_grace(self) -> None:
        if not self.owned:
            super()._schedule_grace()


async def header(redis: SharedRedis, keys: StepKeys) -> tuple[int, bool]:
    """The step's current version (0 before its owner began) and whether its lease is held."""
    async with redis.client.pipeline(transaction=False) as pipe:
        pipe.hget(keys.header, "version")
        pipe.exists(keys.lease)
        version, leased = await pipe.execute()
    return int(version or 0), bool(leased)


async def streamed(redis: SharedRedis, keys: StepKeys) -> str:
    """The text of the step's current version in Redis ("" before its owner began)."""
    version, _ = await header(redis, keys)
    if not version:
        return ""
    entries = await redis.client.xrange(keys.stream(version))
    # The client decodes responses: each entry's fields are str.
    return "".join(str(fields.get("t", "")) for _, fields in entries or [] if fields)


class Reader:
    """The worker's one reader: a single XREAD blocks on the streams of every mirror here
    (never one blocking connection per viewer) and applies each entry to its mirror."""

    def __init__(
        self, redis: SharedRedis, *, on_end: Callable[[Shared], None] = lambda gen: None
    ) -> None:
        self._redis = redis
        self._on_end = on_end  # a mirror read its writer's end
        self._streams: dict[str, tuple[Shared, str]] = {}  # stream key -> (mirror, last id)
        self._wake = anyio.Event()
        self._turn = 0  # where the next XREAD starts when more than MAX_STREAMS are watched

    async def watch(self, gen: Shared, keys: StepKeys, version: int) -> None:
        """Follow `version`'s stream from its start (the mirror gets the whole text so far at
        once), then through the reader."""
        self.unwatch(gen)
        gen.watched = version
        stream = keys.stream(version)
        entries: list[tuple[str, dict[str, str]]] = await self._redis.call(
            lambda: self._redis.client.xrange(stream)  # type: ignore[arg-type,return-value]
        )
        text = "".join(fields.get("t", "") for _, fields in entries)
        if gen.ready.is_set():
            gen.replace(text, version)
        else:
            gen.append(text)
            gen.start(version)
        last = "0-0"
        for entry_id, fields in entries:
            last = entry_id
            if not self._apply(gen, keys, fields, text=False):
                return
        self._streams[stream] = (gen, last)
        self._wake.set()

    def unwatch(self, gen: Shared) -> None:
        if gen.watched:
            self._streams.pop(StepKeys(gen.key).stream(gen.watched), None)
            gen.watched = 0

    def _apply(self, gen: Shared, keys: StepKeys, fields: dict[str, str], *, text: bool) -> bool:
        """One entry on the mirror; False when the mirror follows this stream no longer."""
        if "s" in fields:
            gen.set_status(fields["s"])
        if text and fields.get("t"):
            gen.append(fields["t"])
        if "v" in fields:
            # Replaced under a new version: read the new stream from its start.
            self._follow_next(gen, keys, int(fields["v"]))
            return False
        if "e" in fields:
            # Its writer ended. Whether the step ended with it, or is written again (stopped
            # and "Write it again" pressed at once), is the store's to say: the broker asks it.
            gen.ended_version = gen.watched
            self.unwatch(gen)
            self._on_end(gen)
            return False
        return True

    def _follow_next(self, gen: Shared, keys: StepKeys, version: int) -> None:
        self.unwatch(gen)
        gen.watched = version
        self._streams[keys.stream(version)] = (gen, "0-0")
        gen.replacing = True

    async def run(self) -> None:
        while True:
            if not self._streams:
                await self._wake.wait()
                self._wake = anyio.Event()
                continue
            streams = list(self._streams.items())
            self._turn = self._turn % len(streams)
            turn = streams[self._turn : self._turn + MAX_STREAMS]
            self._turn += MAX_STREAMS
            cursor = {stream: last for stream, (_, last) in turn}
            try:
                reply = await self._read(cursor)
            except Exception as exc:
                # Never the app's task group down; Redis away is waited out.
                if not isinstance(exc, UNAVAILABLE):
                    logger.warning("Stream reader failed; reading again", exc_info=True)
                await anyio.sleep(0.5)
                continue
            for stream, entries in _streams_of(reply):
                for entry_id, fields in entries:
                    watched = self._streams.get(stream)
                    if watched is None:
                        break
                    gen = watched[0]
                    self._streams[stream] = (gen, entry_id)
                    if gen.replacing:
                        # The first entry of a new version holds its whole text so far.
                        gen.replacing = False
                        gen.replace(fields.get("t", ""), gen.watched)
                        fields = {k: v for k, v in fields.items() if k != "t"}
                    self._apply(gen, StepKeys(gen.key), fields, text=True)

    async def _read(self, cursor: dict[str, str]) -> Any:
        return await self._redis.call(
            lambda: self._redis.client.xread(cursor, block=READ_BLOCK_MS)  # type: ignore[arg-type]
        )


def _streams_of(reply: Any) -> list[tuple[str, list[tuple[str, dict[str, str]]]]]:
    """XREAD's reply (RESP2, the client's protocol) as (stream, entries)."""
    return [(stream, entries) for stream, entries in reply or []]


async def sleep_until_ended(gen: Generation, seconds: float) -> None:
    """Sleep `seconds`, or less if the generation ends meanwhile."""
    with anyio.move_on_after(seconds):
        while not gen.ended:
            await gen.changed.wait()
