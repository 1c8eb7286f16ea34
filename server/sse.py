"""The SSE response of a stream: sse-starlette, fed events that are already encoded."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message, Send

from server.services import Services
from server.streaming import Event

SHUTDOWN_GRACE_S = 1.0


class FrameResponse(EventSourceResponse):
    """sse-starlette's response (pings, disconnects, the shutdown goodbye) for bytes that are
    already SSE frames. Without a send timeout a send needs no cancel scope of its own: that
    scope per event was a twentieth of the app's CPU under load (bench/RESULTS.md)."""

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is None:
            await send(message)
        else:
            await super()._send_with_timeout(send, message)


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
    finally:
        svc.metrics.streams.dec()
