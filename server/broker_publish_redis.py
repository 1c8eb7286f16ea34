"""The writing side of the distributed broker: an owned generation's text published to its
step's stream, one entry per frame, each fenced by the step's lease; when Redis was away, the
step claimed again and published whole under a new version once it is back."""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio

from server.broker_lease_redis import Lease
from server.broker_stream_redis import DONE_TTL_S, Shared, sleep_until_ended
from server.shared_redis import UNAVAILABLE
from server.store import Store

logger = logging.getLogger("crossroads")


class Publisher:
    """Publishes the generations one worker writes. `lost(gen)` ends a generation whose lease
    another writer holds now."""

    def __init__(
        self,
        store: Store,
        *,
        frame_s: float,
        live_ttl_s: float,
        check_s: float,
        lost: Callable[[Shared], None],
    ) -> None:
        self._store = store
        self._frame_s = frame_s
        self._live_ttl_ms = int(live_ttl_s * 1000)
        self._check_s = check_s
        self._lost = lost

    async def run(self, gen: Shared, lease: Lease, published: anyio.Event) -> None:
        """Publish the generation's frames; while Redis is away this worker's viewers still
        read it, and when Redis is back the step is claimed and published again, whole."""
        try:
            while not gen.ended and (not gen.ready.is_set() or gen.version == gen.stale):
                await gen.changed.wait()
            if gen.version == gen.stale:
                # Ended before this writer began a version (a takeover that found the step
                # finished): the stream is the old owner's, and an entry at this text's offset
                # (none yet) is below its top, which XADD refuses.
                return
            while not await self._frames(gen, lease):
                gen.published = None  # nobody elsewhere can follow now: show all here
                gen._notify()
                if not await self._reclaim(gen, lease):
                    return
        finally:
            published.set()

    async def _frames(self, gen: Shared, lease: Lease) -> bool:
        """One entry per frame with the text added since the last one (first text at once),
        a new stream per version; the last entry says how the generation ended. False when
        Redis went away."""
        version, sent, status = 0, 0, ""
        try:
            while True:
                changed = gen.changed
                text, ended = gen.text, gen.ended
                fields: list[str] = []
                previous: tuple[int, int] | None = None
                new_version = gen.version != version
                if new_version:
                    # Readers of the old version's stream learn where the text went.
                    previous = (version, sent) if version else None
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
                    appended = await lease.append(
                        version,
                        fields,
                        offset=len(text),
                        ttl_ms=ttl,
                        new=new_version,
                        previous=previous,
                    )
                    if not appended:
                        self._lost(gen)
                        return True
                    sent = len(text)
                    gen.published = (version, sent)
                    gen._notify()
                if ended:
                    return True
                await changed.wait()
                if self._frame_s > 0 and sent > 0 and not gen.ended:
                    await anyio.sleep(self._frame_s)
        except UNAVAILABLE as exc:
            # Its one-line text: the traceback of a refused connection says nothing more.
            logger.warning(
                "Generation not published: Redis is unreachable",
                extra={
                    "fields": {
                        "session_id": gen.key[0],
                        "step": gen.key[1],
                        "error": str(exc) or type(exc).__name__,
                    }
                },
            )
            return False

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
