"""The SSE response of a stream: sse-starlette, fed events that are already encoded."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message, Send

from server import logs
from server.events import Event
from server.services import Services
from server.store import Unavailable
from server.viewing import DATABASE_AWAY

SHUTDOWN_GRACE_S = 1.0


class FrameResponse(EventSourceResponse):
    """sse-starlette's response (pings, disconnects, the shutdown goodbye) for bytes that are
    already SSE frames. Without a send timeout a send needs no cancel scope of its own: that
    scope per event was a twentieth of the app's CPU under load (bench/RESULTS.md).

    The heartbeat (`ping`) is the longest silence the stream may keep, and it is kept even when
    the event loop runs late: a heartbeat goes out after half of it without a byte sent.
    sse-starlette sends one every `ping` seconds whatever was sent meanwhile, so a loop that
    woke its timer late (a process sharing a busy core with a thousand streams) stretched the
    silence past the heartbeat (6.9 s with heartbeat_s 5, bench/RESULTS.md). Text counts as a
    sign of life: a stream that is being written sends no heartbeats at all."""

    _last_sent = 0.0

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        self._last_sent = time.monotonic()
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)

    async def _ping(self, send: Send) -> None:
        quiet_s = self.ping_interval / 2
        self._last_sent = self._last_sent or time.monotonic()
        while self.active:
            wait = self._last_sent + quiet_s - time.monotonic()
            if wait > 0:
                await anyio.sleep(wait)
                continue
            ping = self.ping_message_factory() if self.ping_message_factory else _heartbeat()
            async with self._send_lock:
                if self.active:
                    await self._send_with_timeout(
                        send,
                        {"type": "http.response.body", "body": ping.encode(), "more_body": True},
                    )


def sse(svc: Services, events: AsyncGenerator[Event]) -> FrameResponse:
    return FrameResponse(
        _counted(svc, events),
        ping=svc.settings.stream.heartbeat_s,
        # A named event as well as the comment: the page counts heartbeats to tell a silent,
        # dead connection from a step that is only waiting (browsers never see comments).
        ping_message_factory=_heartbeat,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        # Lets a live stream send its goodbye status when the server stops.
        shutdown_event=anyio.Event(),
        shutdown_grace_period=SHUTDOWN_GRACE_S,
    )


def _heartbeat() -> ServerSentEvent:
    return ServerSentEvent(comment="ping", event="heartbeat")


async def _counted(svc: Services, events: AsyncGenerator[Event]) -> AsyncIterator[bytes]:
    svc.metrics.streams.inc()
    try:
        # Closed here, not by the garbage collector: a viewer must leave its generation as
        # soon as its connection does.
        async with aclosing(events):
            async for event in events:
                # The generation's own encoded frame: escaped and encoded once for all viewers.
                yield event.encoded
    except Unavailable as exc:
        # The last event (`done`) is rendered from the store, which is away (or too busy to
        # hand out a connection in time): the stream says so and ends, and the page connects
        # again from its Last-Event-ID (answered 503 until the database is back, then the step
        # as stored). Raised on, it would be a broken response logged as an unhandled error.
        logs.event(
            logging.WARNING, "Stream ended early: the database is unreachable", error=str(exc)
        )
        yield Event("status", DATABASE_AWAY).encoded
    finally:
        svc.metrics.streams.dec()
