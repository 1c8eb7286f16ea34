"""A small SSE reader for tests: events with their ids, comments, and the gaps between them."""

from __future__ import annotations

import html
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx


@dataclass
class Received:
    event: str
    data: str
    id: str | None
    at: float


@dataclass
class Stream:
    status: int
    events: list[Received] = field(default_factory=list)
    comments: list[float] = field(default_factory=list)
    heartbeats: list[float] = field(default_factory=list)  # named `heartbeat` events
    started: float = 0.0
    ended: float = 0.0

    def names(self) -> list[str]:
        return [e.event for e in self.events]

    def of(self, name: str) -> list[Received]:
        return [e for e in self.events if e.event == name]

    def text(self, prefix: str = "") -> str:
        """What the page shows: a snapshot replaces, a chunk appends."""
        text = prefix
        for event in self.events:
            if event.event == "snapshot":
                text = html.unescape(event.data)
            elif event.event == "chunk":
                text += html.unescape(event.data)
        return text

    def largest_gap(self) -> float:
        moments = sorted([self.started, self.ended, *self.comments, *(e.at for e in self.events)])
        return max((b - a for a, b in itertools.pairwise(moments)), default=0.0)


async def parse(
    lines: AsyncIterator[str],
    stream: Stream,
    *,
    stop_after: int | None = None,
    until: Callable[[Stream], bool] | None = None,
) -> None:
    event, data, ident = "message", list[str](), None
    async for line in lines:
        if line == "":
            if event == "heartbeat":
                # Its comment line was counted too; the name is what a browser can see.
                stream.heartbeats.append(time.monotonic())
                if until is not None and until(stream):
                    return
            elif data or event != "message":
                stream.events.append(Received(event, "\n".join(data), ident, time.monotonic()))
                if stop_after is not None and len(stream.events) >= stop_after:
                    return
                if until is not None and until(stream):
                    return
            event, data, ident = "message", [], None
        elif line.startswith(":"):
            stream.comments.append(time.monotonic())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                ident = value


async def read(
    client: httpx.AsyncClient,
    url: str,
    *,
    last_event_id: str | None = None,
    stop_after: int | None = None,
    until: Callable[[Stream], bool] | None = None,
) -> Stream:
    """Read a stream to its end (or `stop_after` events, or until `until(stream)` holds),
    recording when each line arrived."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    stream = Stream(status=0, started=time.monotonic())
    async with client.stream("GET", url, headers=headers) as response:
        stream.status = response.status_code
        if response.status_code == 200:
            await parse(response.aiter_lines(), stream, stop_after=stop_after, until=until)
    stream.ended = time.monotonic()
    return stream
