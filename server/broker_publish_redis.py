"""The writing side of the distributed broker: the text of the generations one worker writes,
published to their steps' streams in one round trip per frame tick for all of them (first text
at once), each entry fenced by its step's lease; when Redis was away, a step claimed again and
published whole under a new version once it is back."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from server.broker_lease_redis import Lease
from server.broker_stream_redis import DONE_TTL_S, Shared, sleep_until_ended
from server.broker_tick_redis import run_scripts
from server.shared_redis import UNAVAILABLE, SharedRedis
from server.store import Store
from server.streaming import Generation

logger = logging.getLogger("crossroads")

# One entry per step. KEYS per step: its lease, its version's stream, its header, the previous
# version's stream. ARGV per step: the lease's token, the entry's id, the keys' expiry in ms,
# the version, '1' when the version is new (the header names it; the previous version's
# stream, when there is a marker id, gets an entry saying where the text went) or '0', that
# marker id or '', how many field strings follow, the fields. 1 per step appended, 0 where this
# writer does not hold the lease (nothing is written for that step), -1 where Redis refused the
# entry (its error does not keep the other steps' entries out).
PUBLISH = """
local out = {}
local a = 1
for i = 0, #KEYS / 4 - 1 do
  local lease, stream, header, old = KEYS[4 * i + 1], KEYS[4 * i + 2], KEYS[4 * i + 3], KEYS[4 * i + 4]
  local token, id, ttl, version = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local new, marker, count = ARGV[a + 4], ARGV[a + 5], tonumber(ARGV[a + 6])
  local first = a + 7
  a = first + count
  if redis.call('GET', lease) ~= token then
    out[i + 1] = 0
  else
    if new == '1' then
      redis.call('HSET', header, 'version', version)
      redis.call('PEXPIRE', header, ttl)
      if marker ~= '' then
        redis.pcall('XADD', old, marker, 'v', version)
        redis.call('PEXPIRE', old, ttl)
      end
    end
    local added = redis.pcall('XADD', stream, id, unpack(ARGV, first, a - 1))
    if type(added) == 'table' and added.err then
      out[i + 1] = -1
    else
      redis.call('PEXPIRE', stream, ttl)
      if new ~= '1' then redis.call('PEXPIRE', header, ttl) end
      out[i + 1] = 1
    end
  end
end
return out
"""
# Steps per script call; a frame tick's calls go in one pipeline.
STEPS_PER_CALL = 100


@dataclass(eq=False)
class Outbox:
    """What Redis has of one generation: of which version, how much text, which status."""

    gen: Shared
    lease: Lease
    version: int = 0
    sent: int = 0
    status: str = ""
    closed: anyio.Event = field(default_factory=anyio.Event)  # nothing more goes out
    away: bool = False  # closed because Redis went away
    sent_at: float = -math.inf  # when its last entry went out: the next waits a frame

    @property
    def urgent(self) -> bool:
        """Goes out at once, not at the next frame: the first text, a new version, the end."""
        gen = self.gen
        return self.sent == 0 or gen.version != self.version or gen.ended


class Publisher:
    """Publishes the generations one worker writes: `run` is the worker's one frame tick,
    `publish` follows one generation. `lost(gen)` ends a generation whose lease another
    writer holds now."""

    def __init__(
        self,
        redis: SharedRedis,
        store: Store,
        *,
        frame_s: float,
        live_ttl_s: float,
        check_s: float,
        lost: Callable[[Shared], None],
    ) -> None:
        self._redis = redis
        self._store = store
        self._frame_s = frame_s
        self._live_ttl_ms = int(live_ttl_s * 1000)
        self._check_s = check_s
        self._lost = lost
        self._script = redis.client.register_script(PUBLISH)
        self._dirty: dict[Shared, Outbox] = {}
        self._wake = anyio.Event()  # something to publish
        self._urgent = anyio.Event()  # something to publish at once
        self.flushes = 0  # round trips (the tests read it)

    async def publish(self, gen: Shared, lease: Lease, published: anyio.Event) -> None:
        """Publish the generation's frames until its end; while Redis is away this worker's
        viewers still read it, and when Redis is back the step is claimed and published again,
        whole."""
        try:
            while not gen.ended and (not gen.ready.is_set() or gen.version == gen.stale):
                await gen.changed.wait()
            if gen.version == gen.stale:
                # Ended before this writer began a version (a takeover that found the step
                # finished): the stream is the old owner's, and an entry at this text's offset
                # (none yet) is below its top, which XADD refuses.
                return
            while True:
                box = Outbox(gen, lease)
                gen.on_change = lambda box=box: self._mark(box)
                self._mark(box)
                await box.closed.wait()
                gen.on_change = None
                if not box.away:
                    return
                gen.published = None  # nobody elsewhere can follow now: show all here
                gen._notify()
                if not await self._reclaim(gen, lease):
                    return
        finally:
            gen.on_change = None
            published.set()

    def _mark(self, box: Outbox) -> None:
        # On every change of the text (once per token): cheap, no task switch.
        self._dirty[box.gen] = box
        self._wake.set()
        if box.urgent or self._frame_s <= 0:
            self._urgent.set()

    async def run(self) -> None:
        """The worker's frame tick: what changed, for every generation whose frame is due, in
        one round trip. A generation's entries come a frame apart, but its first text, a new
        version or its end go out at once (with whichever others are due then)."""
        while True:
            if not self._dirty:
                await self._wake.wait()
            if not self._urgent.is_set():
                due = min(box.sent_at for box in self._dirty.values()) + self._frame_s
                with anyio.move_on_after(due - time.monotonic()):
                    await self._urgent.wait()
            self._urgent = anyio.Event()
            now = time.monotonic()
            boxes = [
                box
                for box in self._dirty.values()
                if box.urgent or now - box.sent_at >= self._frame_s
            ]
            for box in boxes:
                del self._dirty[box.gen]
                box.sent_at = now
            if not self._dirty:
                self._wake = anyio.Event()  # set again by the next change
            if not boxes:
                continue
            try:
                await self._flush(boxes)
            except Exception as exc:
                # Never the app's task group down: as when Redis is away, each generation's
                # viewers here read it all, and it is claimed and published again, whole.
                logger.warning("Frames not published", exc_info=True)
                for box in boxes:
                    self._away(box, exc, said=True)

    async def _flush(self, boxes: list[Outbox]) -> None:
        """One entry for each generation with something new: the text added since its last
        entry, a new stream per version; its last entry says how it ended."""
        sending: list[tuple[Outbox, int, bool]] = []  # the box, its text's length, ended
        calls: list[tuple[list[str], list[str | int]]] = []
        for box in boxes:
            entry = self._entry(box)
            if entry is None:
                continue
            keys, args, length, ended = entry
            if len(sending) % STEPS_PER_CALL == 0:
                calls.append(([], []))
            calls[-1][0].extend(keys)
            calls[-1][1].extend(args)
            sending.append((box, length, ended))
        if not calls:
            return
        self.flushes += 1
        try:
            answers = await self._redis.call(lambda: run_scripts(self._redis, self._script, calls))
        except UNAVAILABLE as exc:
            for box, _, _ in sending:
                self._away(box, exc)
            return
        appended = [int(ok) for part in answers for ok in part]
        for (box, length, ended), ok in zip(sending, appended, strict=True):
            gen = box.gen
            if ok < 0:
                refused = RuntimeError("Redis refused the entry")
                self._away(box, refused, message="Generation not published: entry refused")
                continue
            if not ok:
                self._lost(gen)
                box.closed.set()
                continue
            box.sent = length
            gen.published = (box.version, length)
            Generation._notify(gen)  # the viewers here may show it now; not marked again
            if ended:
                box.closed.set()

    def _entry(self, box: Outbox) -> tuple[list[str], list[str | int], int, bool] | None:
        """The generation's next entry (keys, args, its text's length, whether it ends it), or
        None when nothing changed. Takes what it says as sent: a failed call closes the box."""
        gen = box.gen
        if box.closed.is_set():
            return None
        text, ended = gen.text, gen.ended
        fields: list[str] = []
        previous: tuple[int, int] | None = None
        new_version = gen.version != box.version
        if new_version:
            # Readers of the old version's stream learn where the text went.
            previous = (box.version, box.sent) if box.version else None
            box.version, box.sent = gen.version, 0
        if len(text) > box.sent or new_version:
            fields += ["t", text[box.sent :]]
        if gen.status != box.status or new_version:
            box.status = gen.status
            fields += ["s", box.status]
        if ended:
            fields += ["e", "finished" if gen.finished else "ended"]
        if not fields:
            return None
        keys = box.lease.keys
        ttl = DONE_TTL_S * 1000 if ended else self._live_ttl_ms
        old = keys.stream(previous[0] if previous else box.version)
        marker = f"{previous[1]}-*" if previous else ""
        args: list[str | int] = [box.lease.token, f"{len(text)}-*", ttl, box.version]
        args += ["1" if new_version else "0", marker, len(fields), *fields]
        return [keys.lease, keys.stream(box.version), keys.header, old], args, len(text), ended

    def _away(
        self,
        box: Outbox,
        exc: Exception,
        *,
        message: str = "Generation not published: Redis is unreachable",
        said: bool = False,
    ) -> None:
        """Nothing more goes out of this box: its generation is shown whole here, and claimed
        and published again under a new version (the publisher's `_reclaim`)."""
        gen = box.gen
        if not said:
            # Its one-line text: the traceback of a refused connection says nothing more.
            logger.warning(
                message,
                extra={
                    "fields": {
                        "session_id": gen.key[0],
                        "step": gen.key[1],
                        "error": str(exc) or type(exc).__name__,
                    }
                },
            )
        box.away = True
        box.closed.set()

    async def _reclaim(self, gen: Shared, lease: Lease) -> bool:
        """Redis is back (or this worker began the step while it was away): hold the step's
        lease again, unless another worker took it meanwhile (then this one gives way), and
        go on under a new version, so that whatever Redis lost or missed is published whole
        and mirrors anywhere follow the new stream. False when there is nothing to publish."""
        while not gen.ended:
            await sleep_until_ended(gen, self._check_s)
            try:
                held = await lease.renew()
            except UNAVAILABLE:
                continue
            if not held:
                self._lost(gen)
                return False
            try:
                version = await self._store.bump_version(*gen.key, gen.version)
            except Exception:
                # Stopped, deleted or written by another worker meanwhile (a Conflict), or the
                # database away: the viewers reconnect and get what the step is.
                logger.warning("Generation not published again", exc_info=True)
                self._lost(gen)
                return False
            gen.replace(gen.text, version)
            return True
        # Ended while Redis was away: workers that follow the step find it in the store when
        # they find its lease gone.
        return False
