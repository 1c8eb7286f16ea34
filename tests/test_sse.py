"""The stream's own SSE framing: the same bytes sse-starlette would write, built once."""

from __future__ import annotations

import inspect
import itertools
import time
from collections.abc import AsyncGenerator, AsyncIterator
from types import SimpleNamespace

import anyio
import pytest
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Message

from server.events import Event
from server.sse import FrameResponse, sse
from server.store import Unavailable
from server.viewing import DATABASE_AWAY

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


def test_the_ping_the_frame_response_replaces_is_still_sse_starlettes() -> None:
    """The heartbeat on silence overrides sse-starlette's `_ping` too: same guard."""
    original = EventSourceResponse.__dict__["_ping"]
    assert list(inspect.signature(original).parameters) == ["self", "send"]
    assert FrameResponse._ping is not original


HEARTBEAT_S = 2.0


async def _heartbeats(pieces: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """What a FrameResponse with HEARTBEAT_S writes for pieces sent after their delays:
    (monotonic time, body) of every body message."""
    sent: list[tuple[float, bytes]] = []
    finished = anyio.Event()

    async def frames() -> AsyncIterator[bytes]:
        for delay, body in pieces:
            await anyio.sleep(delay)
            yield body

    async def receive() -> Message:
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            sent.append((time.monotonic(), message["body"]))

    response = FrameResponse(frames(), ping=HEARTBEAT_S, ping_message_factory=lambda: PING)
    scope = {"type": "http", "method": "GET", "asgi": {"spec_version": "2.4"}}
    with anyio.fail_after(30):
        await response(scope, receive, send)
    finished.set()
    return sent


PING = ServerSentEvent(comment="ping", event="heartbeat")


@pytest.mark.anyio
async def test_a_stream_being_written_sends_no_heartbeat_and_a_silent_one_sends_them_early() -> (
    None
):
    """The heartbeat is the longest silence allowed: text is a sign of life, and a silent stream
    gets a heartbeat after half of it, so a loop running late keeps within it (bench/RESULTS.md)."""
    text = [(0.0, b"data: first\r\n\r\n")] + [(HEARTBEAT_S / 8, b"data: x\r\n\r\n")] * 16
    sent = await _heartbeats([*text, (2.5 * HEARTBEAT_S, b"data: last\r\n\r\n")])
    bodies = [body for _, body in sent]
    writing = bodies[: len(text)]
    assert PING.encode() not in writing  # two heartbeats' time of text, every eighth of one
    silent = sent[len(text) - 1 :]
    pings = [at for at, body in silent if body == PING.encode()]
    assert pings, "no heartbeat while the stream was silent"
    assert bodies[-1] == b"data: last\r\n\r\n"
    # Each heartbeat only after half a heartbeat without a byte: never sooner.
    for (before, _), (at, body) in itertools.pairwise(silent):
        if body == PING.encode():
            assert at - before >= HEARTBEAT_S / 2 - 0.01


class _Streams:
    def __init__(self) -> None:
        self.open = 0

    def inc(self) -> None:
        self.open += 1

    def dec(self) -> None:
        self.open -= 1


@pytest.mark.anyio
async def test_a_stream_cut_short_by_the_database_says_so_and_ends_cleanly() -> None:
    """The store raised Unavailable after the response began (its pool timed out rendering
    `done`): the stream's last event says the database is not answering, the response ends
    (no 500, nothing raised), and the page connects again."""
    streams = _Streams()
    svc = SimpleNamespace(
        metrics=SimpleNamespace(streams=streams),
        settings=SimpleNamespace(stream=SimpleNamespace(heartbeat_s=HEARTBEAT_S)),
    )

    async def events() -> AsyncGenerator[Event]:
        yield Event("status", "writing")
        yield Event("snapshot", "Half a text", "3.11")
        raise Unavailable("couldn't get a connection after 5.00 sec")

    sent: list[bytes] = []

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            sent.append(message["body"])

    response = sse(svc, events())  # type: ignore[arg-type]
    scope = {"type": "http", "method": "GET", "asgi": {"spec_version": "2.4"}}
    with anyio.fail_after(10):
        await response(scope, receive, send)
    assert sent == [
        Event("status", "writing").encoded,
        Event("snapshot", "Half a text", "3.11").encoded,
        Event("status", DATABASE_AWAY).encoded,
    ]
    assert streams.open == 0
