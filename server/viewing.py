"""What one viewer's stream sends: status at once, a snapshot (or only the missing text on a
resume), coalesced frames, then done; and the events of a step that has finished."""

from __future__ import annotations

import html
import math
import time
from collections.abc import AsyncGenerator

import anyio

from server.events import Event, event_id, parse_event_id
from server.streaming import Done, Generation, Visible

RESTARTING = "the server is restarting; this page reconnects by itself"
# The last event of a stream cut short by the database (too busy to answer in time, or away):
# the page says so and connects again from its Last-Event-ID.
DATABASE_AWAY = "the database is not answering; this page reconnects by itself"
# While the writer writes what the page does not show yet (quick replies, score lines), the text
# on the page is complete and "writing" would look stuck: the page says what is being written
# (static/js/app.js words it for the step's kind).
FINISHING = "finishing"
# A mirror of a step written on another worker may be a read behind the writer whose text a
# resuming viewer saw: it gets this long to catch up before the viewer gets the whole text.
CATCH_UP_S = 1.0


def status_of(gen: Generation) -> str:
    return FINISHING if gen.status == "writing" and gen.hiding else gen.status


async def follow(
    gen: Generation, last_event_id: str | None, *, frame_s: float, done: Done | None = None
) -> AsyncGenerator[Event]:
    """Status at once, then a snapshot (or only the missing text on a resume), then coalesced chunks."""
    gen.join()
    try:
        sent_status = status_of(gen)
        yield Event("status", sent_status)
        await gen.ready.wait()
        resume = parse_event_id(last_event_id)
        if resume is not None and resume[0] == gen.version and resume[1] > gen.shown:
            await _catch_up(gen, *resume)
        if resume is not None and resume[0] == gen.version and resume[1] <= gen.shown:
            sent_version, sent = resume
        else:
            snapshot = gen.snapshot()
            sent_version, sent = gen.version, gen.shown
            yield snapshot
        # Every connection starts from all the complete blocks, then gets each block as it ends.
        blocks = gen.blocks(0)
        sent_blocks = gen.blocks_end
        if blocks is not None:
            yield blocks
        last_frame = time.monotonic()
        while True:
            changed = gen.changed
            status = status_of(gen)
            if status != sent_status:
                sent_status = status
                yield Event("status", status)
            if gen.version != sent_version:
                snapshot = gen.snapshot()
                sent_version, sent = gen.version, gen.shown
                yield snapshot
                sent_blocks = 0
                last_frame = time.monotonic()
            else:
                chunk = gen.chunk(sent)
                if chunk is not None:
                    sent = gen.shown
                    yield chunk
                    last_frame = time.monotonic()
            blocks = gen.blocks(sent_blocks)
            if blocks is not None:
                sent_blocks = gen.blocks_end
                yield blocks
            if gen.ended:
                finished = await gen.done_frame(done) if gen.finished else None
                if finished is not None:
                    yield finished
                return
            if gen.released:
                yield Event("status", RESTARTING)
                return
            await changed.wait()
            # Coalescing: at most one text frame per frame_s; the first text goes out at once,
            # and so does the end (a `done` never waits for a frame). Frames fall on a grid of
            # frame_s, so the viewers of one generation wake together and share its frames.
            if frame_s > 0 and sent > 0 and not gen.ended:
                due = math.ceil((last_frame + frame_s) / frame_s) * frame_s
                if due > time.monotonic():
                    await gen.tick(due).wait()
    finally:
        gen.leave()


async def _catch_up(gen: Generation, version: int, offset: int) -> None:
    """Wait (a moment at most) until the generation shows what the viewer has seen."""
    with anyio.move_on_after(CATCH_UP_S):
        while gen.version == version and gen.shown < offset and not gen.ended:
            await gen.changed.wait()


async def finished(
    status: str, version: int, text: str, done: Done, *, visible: Visible = len
) -> AsyncGenerator[Event]:
    """What a stream on a finished step sends: status, snapshot, done. The status goes out
    before `done`'s element is rendered from the store, so the stream is never silent on it."""
    yield Event("status", status)
    end = min(max(visible(text), 0), len(text))
    yield Event("snapshot", html.escape(text[:end]), event_id(version, end))
    yield Event("done", await done())
