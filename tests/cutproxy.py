"""A TCP proxy the test controls: cut every connection (and refuse new ones), or freeze the
streams (keep them open, forward nothing), to show the page a dead or a silent connection."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class _Pair:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    stream: bool = False  # carried an SSE stream request
    frozen: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                writer.transport.abort()


class CutProxy:
    """127.0.0.1:<port> forwarding to the app's port, on an event loop of its own."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.refusing = False
        self.pairs: list[_Pair] = []
        self.loop = asyncio.new_event_loop()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="cut-proxy", daemon=True)

    # Control, from the test's thread.

    def cut(self) -> None:
        """Every connection drops at once and new ones are refused, like a lost network."""
        self._call(self._cut)

    def restore(self) -> None:
        self.refusing = False

    def freeze_streams(self) -> None:
        """Open streams stay open but nothing more reaches the browser: a stalled line."""
        self._call(self._freeze)

    # Inside the proxy's loop.

    def _call(self, fn: object) -> None:
        done = threading.Event()

        def run() -> None:
            fn()  # type: ignore[operator]
            done.set()

        self.loop.call_soon_threadsafe(run)
        done.wait(5)

    def _cut(self) -> None:
        self.refusing = True
        for pair in self.pairs:
            pair.close()
        self.pairs.clear()

    def _freeze(self) -> None:
        for pair in self.pairs:
            if pair.stream:
                pair.frozen = True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            return
        pair = _Pair(writer, up_writer)
        self.pairs.append(pair)
        pair.tasks = [
            asyncio.ensure_future(self._pipe(reader, up_writer, pair, to_browser=False)),
            asyncio.ensure_future(self._pipe(up_reader, writer, pair, to_browser=True)),
        ]

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        pair: _Pair,
        *,
        to_browser: bool,
    ) -> None:
        try:
            while data := await reader.read(65536):
                if not to_browser and b"/stream " in data:
                    pair.stream = True
                if to_browser and pair.frozen:
                    continue  # swallowed: the browser hears nothing, the socket stays open
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if not pair.frozen:
                with contextlib.suppress(Exception):
                    writer.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, sock=self.sock)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)

    def stop(self) -> None:
        async def shutdown() -> None:
            self._cut()
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
        self.sock.close()


@contextmanager
def cut_proxy(base_url: str) -> Iterator[tuple[str, CutProxy]]:
    """A proxy in front of the app at `base_url`; yields the URL to give the browser."""
    port = int(base_url.rsplit(":", 1)[1].rstrip("/"))
    proxy = CutProxy(port)
    proxy.start()
    try:
        yield f"http://127.0.0.1:{proxy.port}", proxy
    finally:
        proxy.stop()
