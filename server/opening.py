"""Opening a step's stream without a silent wait: the store's checks (whose session, which step)
decide the status code when they answer within a moment; past it the SSE response starts at
once, says `connecting`, keeps its heartbeats, and the checks go on inside it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing

import anyio
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server import logs
from server.errors import Problem
from server.events import Event
from server.journeys import NotOpen
from server.services import Services
from server.sse import sse
from server.store import Unavailable

# How long a stream request may wait for the store before its response starts anyway. Within
# it the checks' refusals keep their status codes (404, 409, 503); past it the request is
# answered 200 and a refusal becomes the stream's last event. A store that answers as usual
# (a millisecond or two) always decides in time; one queued behind a thousand generations
# (the distributed bench at N = 1,000: 22.7 s before the first byte, bench/RESULTS.md) no longer
# keeps the browser silent. Never more than half a heartbeat, the silence a stream may keep.
OPEN_WAIT_S = 0.25
CONNECTING = "connecting"
# The last event of a stream whose checks refused it after the response had started (an
# unknown or another browser's journey, a step not open): the page connects again, and the
# store, answering in time then, gives the request its status code. Both refusals read the
# same, so a stranger learns nothing a 404 would not tell.
NOT_OPENED = "this step could not be opened; this page reconnects by itself"

Opener = Callable[[], Awaitable[AsyncGenerator[Event]]]


class StreamOpening(Response):
    """A stream request's response: `open` runs the checks (raising the request's refusal) and
    gives the stream's events. It is waited for at most `wait_s` before the response starts."""

    def __init__(self, svc: Services, open: Opener, *, wait_s: float) -> None:
        super().__init__()
        self._svc = svc
        self._open = open
        self._wait_s = wait_s
        self._events: AsyncGenerator[Event] | None = None
        self._error: Exception | None = None
        self._decided = anyio.Event()
        self._started: asyncio.Task[None] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The checks run in this task and the early start is a timer, not a task group: a
        # store that answers in time costs no extra task and no extra turns of the event loop,
        # each of which lasts long on a worker relaying a thousand streams (bench/RESULTS.md).
        timer = asyncio.get_running_loop().call_later(
            self._wait_s, self._start, scope, receive, send
        )
        try:
            self._events = await self._open()
        except Exception as exc:
            self._error = exc
        except BaseException:
            # Cancelled (the server stops): a response already started ends with this task.
            if self._started is not None:
                self._started.cancel()
            raise
        finally:
            timer.cancel()
            self._decided.set()
        if self._started is not None:
            # Already started: the response goes on with what the checks decided. (Awaiting
            # it hands on this task's cancellation, at a server's shutdown, to it.)
            await self._started
            return
        if self._error is not None:
            # Decided in time: the refusal is this request's answer (a 404, 409 or 503),
            # raised for the route's error handling as if the handler had raised it.
            raise self._error
        assert self._events is not None
        await sse(self._svc, self._events)(scope, receive, send)

    def _start(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The store is slow: the browser hears from us now, and the checks go on."""
        response = sse(self._svc, self._late())
        self._started = asyncio.get_running_loop().create_task(response(scope, receive, send))

    async def _late(self) -> AsyncGenerator[Event]:
        yield Event("status", CONNECTING)
        await self._decided.wait()
        if isinstance(self._error, Unavailable):
            # The stream's own handling: a last event saying the database is not answering.
            raise self._error
        if isinstance(self._error, Problem | NotOpen):
            logs.event(
                logging.INFO,
                "Stream refused after it started: the store answered late",
                error=str(self._error),
            )
            yield Event("status", NOT_OPENED)
            return
        if self._error is not None:
            raise self._error
        if self._events is None:
            return  # the request was cancelled before its checks ended
        async with aclosing(self._events) as events:
            async for event in events:
                yield event


def open_wait_s(heartbeat_s: float) -> float:
    return min(OPEN_WAIT_S, heartbeat_s / 2)
