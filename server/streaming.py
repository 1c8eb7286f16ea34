"""Generations owned by the server: single flight, the text and its frames, grace on leave."""

from __future__ import annotations

import asyncio
import html
import logging
import time
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from server.blocks import complete_end
from server.events import Event, event_id
from server.generators.formats import tail_begun
from server.reasons import FailureReason

logger = logging.getLogger("crossroads")
Key = tuple[str, int]
# How much of a text may be shown live (a count of leading code points); the whole by default.
Visible = Callable[[str], int]
# Complete Markdown blocks (and the offset they start at) to safe HTML: a step whose blocks are
# shown formatted while it streams.
Render = Callable[[str, int], str]
# The step's element for the `done` event, rendered from the store by the web layer.
Done = Callable[[], Awaitable[str]]


class Generation:
    """The live text of one step, written by one task and read by any number of viewers."""

    def __init__(
        self,
        key: Key,
        *,
        grace_s: float,
        on_abandon: Callable[[Generation], None],
        visible: Visible = len,
        render: Render | None = None,
    ) -> None:
        self.key = key
        self.version = 0
        self.status = "connecting"
        self.finished = False  # reached what the page shows for good: done, stopped, deleted
        self._done: Event | None = None
        self._done_lock = anyio.Lock()
        self.ended = False  # finished, abandoned or shut down: no more changes
        self.released = False  # the server is stopping: viewers say goodbye and reconnect later
        self.viewers = 0
        self.created_at = time.monotonic()
        self.cancel_scope = anyio.CancelScope()
        # Cancelling only the model call lets the step fall back instead of ending.
        self.model_scope = anyio.CancelScope()
        self.shed_reason: FailureReason | None = None
        self.calling_model = False  # holding a slot, in a model call: what shedding can stop
        self.ready = anyio.Event()
        # The text as appended pieces, joined only when read: appending never copies the text.
        self._pieces: list[str] = []
        self._length = 0
        self._visible = visible
        self._shown: tuple[int, int, int] = (0, 0, 0)  # version, length, visible end
        self.render = render
        self._blocks: tuple[int, int, int] = (0, 0, 0)  # version, shown, end of complete blocks
        self._block_frames: dict[tuple[int, int, int], Event] = {}  # this frame's blocks events
        self._frames: dict[tuple[int, int, int], Event] = {}  # this frame's text events
        self._changed: anyio.Event | None = None
        self._ticks: dict[float, anyio.Event] = {}
        self._grace_s = grace_s
        self._on_abandon = on_abandon
        self._grace_timer: asyncio.TimerHandle | None = None
        self._schedule_grace()

    @property
    def text(self) -> str:
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
        return self._pieces[0] if self._pieces else ""

    @property
    def shown(self) -> int:
        """How much of the text viewers may see now: `visible` is asked once per frame, not
        once per append (a question's or report's tail check reads the whole text)."""
        version, length, end = self._shown
        if version != self.version or length != self._length:
            end = min(max(self._visible(self.text), 0), self._length)
            self._shown = (self.version, self._length, end)
        return end

    @property
    def hiding(self) -> bool:
        """Whether the writer is writing what viewers see only once the step is done (a
        question's quick replies, a report's scores): its heading is held back, whole. The held
        part is short, so looking at it once a frame costs little."""
        end = self.shown
        return end < self._length and tail_begun(self.text[end:])

    # Writer side.

    def start(self, version: int) -> None:
        self.version = version
        self.ready.set()
        self._notify()

    def append(self, text: str) -> None:
        if text:
            self._pieces.append(text)
            self._length += len(text)
            self._notify()

    def replace(self, text: str, version: int) -> None:
        self._pieces = [text] if text else []
        self._length = len(text)
        self.version = version
        self._notify()

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self._notify()

    def shed(self, reason: FailureReason) -> None:
        """Stop the model call (memory pressure); the writer falls back."""
        self.shed_reason = reason
        self.model_scope.cancel()

    def finish(self, done_html: str | None = None) -> None:
        """The step is what the store now says (written, stopped or gone): every viewer gets
        its `done` element and the stream ends. The element is `done_html` when the writer
        has it; else the web layer renders it from the store (follow's `done`)."""
        self.finished = True
        if done_html is not None:
            self._done = Event("done", done_html)
        self._end()

    async def done_frame(self, render: Done | None) -> Event | None:
        """The `done` event, rendered for the first viewer that needs it and shared with the
        others; None if nobody can render it."""
        async with self._done_lock:
            if self._done is None and render is not None:
                self._done = Event("done", await render())
        return self._done

    def _end(self) -> None:
        self.ended = True
        self.ready.set()
        self._cancel_grace()
        self._notify()
        for tick in self._ticks.values():
            tick.set()  # `done` never waits for a frame
        self._ticks.clear()

    def _notify(self) -> None:
        # Only a viewer waiting makes an event: an append nobody waits for costs nothing here.
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    # Frames: one text event per generation and offset, escaped and encoded once.

    def snapshot(self) -> Event:
        end = self.shown
        key = (self.version, -1, end)
        frame = self._frames.get(key)
        if frame is None:
            frame = Event("snapshot", html.escape(self.text[:end]), event_id(self.version, end))
            _remember(self._frames, key, frame)
        return frame

    def chunk(self, sent: int) -> Event | None:
        """The text after offset `sent` that may be shown, or None when there is none yet."""
        end = self.shown
        if end <= sent:
            return None
        key = (self.version, sent, end)
        frame = self._frames.get(key)
        if frame is None:
            piece = self.text[sent:end]
            frame = Event("chunk", html.escape(piece), event_id(self.version, end))
            _remember(self._frames, key, frame)
        return frame

    @property
    def blocks_end(self) -> int:
        """Where the complete Markdown blocks of the shown text end (0 without `render`);
        found once per frame, scanning only what was added since."""
        if self.render is None:
            return 0
        version, shown, end = self._blocks
        now = self.shown
        if version != self.version or now < shown:
            end = 0
        if (version, shown) != (self.version, now):
            end = complete_end(self.text[:now], end)
            self._blocks = (self.version, now, end)
        return end

    def blocks(self, since: int) -> Event | None:
        """The blocks completed after offset `since` (a block end, or 0 for all of them), as
        one `blocks` event: "<since> <end>" on its first line, then their safe HTML. It carries
        no id: the text events alone say how far a viewer has read."""
        end = self.blocks_end
        if self.render is None or end <= since:
            return None
        key = (self.version, since, end)
        frame = self._block_frames.get(key)
        if frame is None:
            rendered = self.render(self.text[since:end], since)
            frame = Event("blocks", f"{since} {end}\n{rendered}")
            _remember(self._block_frames, key, frame)
        return frame

    def tick(self, due: float) -> anyio.Event:
        """Set at monotonic time `due` (or at the end): one timer per frame for all viewers."""
        tick = self._ticks.get(due)
        if tick is None:
            tick = self._ticks[due] = anyio.Event()
            asyncio.get_running_loop().call_later(due - time.monotonic(), self._fire, due)
        return tick

    def _fire(self, due: float) -> None:
        tick = self._ticks.pop(due, None)
        if tick is not None:
            tick.set()

    # Viewer side.

    def join(self) -> None:
        self.viewers += 1
        self._cancel_grace()

    def leave(self) -> None:
        self.viewers -= 1
        if self.viewers == 0:
            self._schedule_grace()

    def touch(self) -> None:
        """A page view: keeps an unwatched generation alive for another grace period."""
        if self.viewers == 0:
            self._schedule_grace()

    @property
    def changed(self) -> anyio.Event:
        if self._changed is None:
            self._changed = anyio.Event()
        return self._changed

    # Grace on leave.

    def _schedule_grace(self) -> None:
        self._cancel_grace()
        if not self.ended:
            loop = asyncio.get_running_loop()
            self._grace_timer = loop.call_later(self._grace_s, self._abandon)

    def _cancel_grace(self) -> None:
        if self._grace_timer is not None:
            self._grace_timer.cancel()
            self._grace_timer = None

    def _abandon(self) -> None:
        self._grace_timer = None
        if self.viewers == 0 and not self.ended:
            self._on_abandon(self)
            # Ended at once, not when the cancelled task has cleaned up: a viewer arriving in
            # between must start a fresh generation, not join one that will never finish.
            self._end()
            self.cancel_scope.cancel()


Work = Callable[[Generation], Awaitable[None]]


class Generations:
    """The registry of running generations, one per (session, step), in the app's task group."""

    def __init__(
        self,
        task_group: TaskGroup,
        *,
        grace_s: float,
        on_abandon: Callable[[], None] = lambda: None,
    ) -> None:
        self._tg = task_group
        self._grace_s = grace_s
        self._on_abandon = on_abandon
        self._running: dict[Key, Generation] = {}
        self.abandoned = 0
        self.started = 0

    def __len__(self) -> int:
        return len(self._running)

    def get(self, key: Key) -> Generation | None:
        return self._running.get(key)

    def all(self) -> list[Generation]:
        return list(self._running.values())

    def viewers(self) -> int:
        """Open streams on running generations (each stream is one viewer)."""
        return sum(gen.viewers for gen in self._running.values())

    async def streamed(self, key: Key) -> str:
        gen = self._running.get(key)
        return gen.text if gen is not None and not gen.ended else ""

    def start(
        self, key: Key, work: Work, *, visible: Visible = len, render: Render | None = None
    ) -> Generation:
        """The running generation of this step, or a new one: never two at once."""
        running = self._running.get(key)
        if running is not None and not running.ended:
            running.touch()
            return running
        gen = Generation(
            key,
            grace_s=self._grace_s,
            on_abandon=self._count_abandon,
            visible=visible,
            render=render,
        )
        self._running[key] = gen
        self.started += 1
        self._tg.start_soon(self._run, gen, work, name=f"generation {key[0]}/{key[1]}")
        return gen

    def _count_abandon(self, gen: Generation) -> None:
        self.abandoned += 1
        self._on_abandon()

    async def _run(self, gen: Generation, work: Work) -> None:
        try:
            with gen.cancel_scope:
                await work(gen)
        except Exception:
            # One broken generation must not take the others (or the app's task group) down:
            # its viewers' streams end, their browsers reconnect and the step is tried again.
            logger.exception(
                "Generation failed",
                extra={"fields": {"session_id": gen.key[0], "step": gen.key[1]}},
            )
        finally:
            if not gen.ended:
                gen._end()
            if self._running.get(gen.key) is gen:
                del self._running[gen.key]

    def release_viewers(self) -> None:
        """The server is stopping: every stream sends a last status and ends."""
        for gen in list(self._running.values()):
            gen.released = True
            gen._notify()

    def end(
        self, session_id: str, n: int, *, following: bool = False, deleted: bool = False
    ) -> None:
        """Step n (and every later step, if `following`) changed in the store: its running
        generation ends, its viewers get what the step is now (nothing else is kept here)."""
        for gen in list(self._running.values()):
            sid, step = gen.key
            if sid == session_id and (step == n or (following and step > n)) and not gen.ended:
                gen.finish()
                gen.cancel_scope.cancel()

    def cancel_all(self) -> None:
        for gen in list(self._running.values()):
            gen.cancel_scope.cancel()


def _remember(
    frames: dict[tuple[int, int, int], Event], key: tuple[int, int, int], frame: Event
) -> None:
    """Keep this frame's events (keyed version, from, to) for the viewers still to ask."""
    if any(old[0] != key[0] or old[2] != key[2] for old in frames):
        frames.clear()  # the text moved on: older frames are never asked for again
    frames[key] = frame
