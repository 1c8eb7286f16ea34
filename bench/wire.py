"""A lean HTTP/1.1 client over asyncio streams, and an SSE reader that timestamps every read.

httpx costs too much CPU per chunk for a thousand streams on two cores shared with the
servers under test (see RESULTS.md), so the load client speaks HTTP/1.1 itself.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

clock = time.perf_counter


class HttpError(Exception):
    """An answer the load client did not expect (status, framing)."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes = b""
    set_cookies: list[str] = field(default_factory=list)
    head_at: float = 0.0
    ended: str = ""  # "end" (the body ended), "done" (the reader had all it wanted), "eof"


def _head(raw: bytes) -> Response:
    status_line, *header_lines = raw.decode("latin-1").split("\r\n")
    response = Response(int(status_line.split(" ", 2)[1]), {})
    for line in header_lines:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "set-cookie":
            response.set_cookies.append(value)
        response.headers[name] = value
    return response


class Dechunker:
    """Undoes chunked transfer encoding incrementally."""

    def __init__(self) -> None:
        self._buf = b""
        self._remaining: int | None = None  # bytes left in the current chunk, its CRLF included
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        buf = self._buf + data if self._buf else data
        pos, out = 0, []
        while not self.finished:
            if self._remaining is None:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(buf[pos:eol].split(b";", 1)[0], 16)
                pos = eol + 2
                if size == 0:
                    self.finished = True
                    break
                self._remaining = size + 2
            else:
                available = len(buf) - pos
                if available == 0:
                    break
                take = min(available, self._remaining)
                payload = min(take, self._remaining - 2)
                if payload > 0:
                    out.append(buf[pos : pos + payload])
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._remaining = None
        self._buf = buf[pos:]
        return b"".join(out)


OnData = Callable[[bytes, float], bool]


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection as a protocol: each read is handled in
    `data_received`, timestamped on arrival, with no stream-reader task in between."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Response] | None = None
        self._on_data: OnData | None = None
        self._response: Response | None = None
        self._buf = b""
        self._parts: list[bytes] = []
        self._dechunker: Dechunker | None = None
        self._length = -1  # bytes of body left; -1: until the connection closes
        self._draining = False  # the reader is done; the rest of the body is read and dropped
        self._idle = asyncio.Event()
        self._idle.set()
        self.closed = False

    async def open(self) -> Connection:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, self.host, self.port)
        return self

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish("eof")
        self._idle.set()

    def data_received(self, data: bytes) -> None:
        at = clock()
        if self._response is None:
            if self._waiter is None:
                return  # nothing asked for
            self._buf += data
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            response = self._response = _head(self._buf[:end])
            response.head_at = at
            data, self._buf = self._buf[end + 4 :], b""
            if response.headers.get("transfer-encoding", "").lower() == "chunked":
                self._dechunker = Dechunker()
            else:
                self._dechunker = None
                self._length = int(response.headers.get("content-length", "-1"))
            if self._streaming():
                assert self._on_data is not None
                if self._on_data(b"", at):
                    self._finish("done")
            if self._length == 0:
                self._ended()
                return
        self._body(data, at)

    def _streaming(self) -> bool:
        return (
            self._on_data is not None
            and self._response is not None
            and self._response.status == 200
        )

    def _body(self, data: bytes, at: float) -> None:
        if self._dechunker is not None:
            payload = self._dechunker.feed(data)
            ended = self._dechunker.finished
        else:
            payload = data
            if self._length > 0:
                self._length -= len(data)
            ended = self._length == 0
        if self._draining:
            pass
        elif self._streaming():
            assert self._on_data is not None
            if payload and self._on_data(payload, at):
                self._finish("done")
        else:
            self._parts.append(payload)
        if ended:
            self._ended()

    def _ended(self) -> None:
        self._finish("end")
        self._draining = False
        self._response = None
        self._idle.set()

    def _finish(self, how: str) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        response = self._response or Response(0, {})
        response.ended = how
        response.body = b"".join(self._parts)
        self._parts = []
        if how == "done":
            self._draining = True
        waiter.set_result(response)

    # Requests

    async def exchange(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        on_data: OnData | None = None,
    ) -> Response:
        """Send a request and wait for its answer; with `on_data`, a 200 body goes to
        `on_data(payload, at)` read by read until it returns True or the body ends."""
        await self._idle.wait()
        if self.closed or self._transport is None:
            raise HttpError("connection closed")
        self._idle.clear()
        self._waiter = asyncio.get_running_loop().create_future()
        self._on_data, self._response, self._parts, self._length = on_data, None, [], -1
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        self._transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return await self._waiter


def form(values: dict[str, str]) -> bytes:
    return urlencode(values).encode()


class SSEReader:
    """Parses SSE lines from the reads of one stream, noting when text, status and done arrive.

    `direct` streams are the upstream's own chat-completion chunks: text is a chunk with
    non-empty `content`, the end is `[DONE]`. App streams end with the `done` event.
    """

    __slots__ = (
        "_buf",
        "_data",
        "_event",
        "comments",
        "direct",
        "done_at",
        "events",
        "fallback_at",
        "first_event_at",
        "first_text_at",
        "last_at",
        "max_gap",
        "statuses",
        "text_after_fallback_at",
        "text_bytes",
        "text_events",
    )

    def __init__(self, started: float, *, direct: bool) -> None:
        self.direct = direct
        self._buf = b""
        self._event = b""
        self._data: list[bytes] = []
        self.last_at = started
        self.max_gap = 0.0
        self.first_event_at: float | None = None
        self.first_text_at: float | None = None
        self.done_at: float | None = None
        self.fallback_at: float | None = None  # the status saying a fallback tier writes the step
        self.text_after_fallback_at: float | None = None
        self.events = 0
        self.text_events = 0
        self.text_bytes = 0
        self.comments = 0
        self.statuses: list[tuple[float, str]] = []

    def gap_until(self, at: float) -> None:
        gap = at - self.last_at
        if gap > self.max_gap:
            self.max_gap = gap
        self.last_at = at

    def feed(self, payload: bytes, at: float) -> bool:
        self.gap_until(at)
        lines = (self._buf + payload).split(b"\n") if self._buf else payload.split(b"\n")
        self._buf = lines.pop()
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if (self._data or self._event) and self._dispatch(at):
                    return True
                self._event, self._data = b"", []
            elif line[0] == 58:  # ":" a comment: the heartbeat
                self.comments += 1
            else:
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    self._data.append(value)
                elif name == b"event":
                    self._event = value
        return False

    def _dispatch(self, at: float) -> bool:
        self.events += 1
        if self.first_event_at is None:
            self.first_event_at = at
        data = b"\n".join(self._data)
        if self.direct:
            if data == b"[DONE]":
                self.done_at = at
                return True
            if b'"content":"' in data and b'"content":""' not in data:
                self._text(data, at)
            return False
        event = self._event
        if event == b"chunk" or (event == b"snapshot" and data):
            self._text(data, at)
        elif event == b"status":
            self.statuses.append((at, data.decode("utf-8", "replace")))
            if self.fallback_at is None and data.startswith(b"using "):
                self.fallback_at = at
        elif event == b"done":
            self.done_at = at
            return True
        return False

    def _text(self, data: bytes, at: float) -> None:
        if self.first_text_at is None:
            self.first_text_at = at
        if self.fallback_at is not None and self.text_after_fallback_at is None:
            self.text_after_fallback_at = at
        self.text_events += 1
        self.text_bytes += len(data)
