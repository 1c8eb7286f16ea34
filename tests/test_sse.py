"""The stream's own SSE framing: the same bytes sse-starlette would write, built once."""

from __future__ import annotations

import inspect

import pytest
from sse_starlette import EventSourceResponse, ServerSentEvent

from server.sse import FrameResponse
from server.streaming import Event

CASES = [
    Event("status", "writing"),
    Event("snapshot", "", "1.0"),
    Event("chunk", "caf\u00e9 \U0001f600 &lt;b&gt;", "2.31"),
    Event("chunk", "two\nlines\r\nand\rthree", "1.12"),
    Event("chunk", "ends with a newline\n", "1.20"),
    Event("done", "<section id='step-0'>\n<p>x</p>\n</section>"),
]


@pytest.mark.parametrize("event", CASES, ids=lambda e: f"{e.event}:{e.data[:12]!r}")
def test_an_encoded_event_is_what_sse_starlette_would_send(event: Event) -> None:
    expected = ServerSentEvent(data=event.data, event=event.event, id=event.id).encode()
    assert event.encoded == expected


def test_an_event_is_encoded_once() -> None:
    event = Event("chunk", "text", "1.4")
    assert event.encoded is event.encoded


def test_the_send_the_frame_response_replaces_is_still_sse_starlettes() -> None:
    """FrameResponse overrides one private method of the pinned sse-starlette: an upgrade that
    renames or reshapes it must fail here, not silently bring back a cancel scope per event."""
    original = EventSourceResponse.__dict__["_send_with_timeout"]
    assert list(inspect.signature(original).parameters) == ["self", "send", "message"]
    assert FrameResponse._send_with_timeout is not original
