"""A scriptable fake OpenAI-compatible chat-completions upstream, in-process or over real HTTP."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import aclosing, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
import anyio.lowlevel
import httpx2
import uvicorn

JsonDict = dict[str, Any]
Outcome = Literal["completed", "client_closed", "dropped", "cut"]

DEFAULT_MODEL = "fake-model"
DEFAULT_CHUNKS = (
    "You ", "stand ", "at ", "a ", "fork ", "in ",
    "a ", "quiet ", "road ", "as ", "night ", "falls.",
)  # fmt: skip

# (message, type, code) shaped like OpenAI's own error bodies.
_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request body (fake).", "invalid_request_error", None),
    404: ("Unknown endpoint (fake).", "invalid_request_error", "unknown_url"),
    429: ("Rate limit reached for requests (fake).", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request (fake).", "server_error", None),
    503: ("The engine is currently overloaded (fake).", "server_error", "overloaded"),
}
_MALFORMED = b'data: {"id": "chatcmpl-fake", "choices": [{"delta": {"content": "bro\n\n'
_DONE = b"data: [DONE]\n\n"
_SSE_HEADERS = [("content-type", "text/event-stream"), ("cache-control", "no-cache")]


@dataclass
class Script:
    """How the fake answers one chat-completions request (chunk indices count content chunks)."""

    chunks: list[str] = field(default_factory=lambda: list(DEFAULT_CHUNKS))
    status: int = 200
    retry_after: str | None = None
    headers_delay_s: float = 0.0
    first_delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    stall_after: int | None = None
    # After this many chunks, wait until `release` is set (by the test, from any thread).
    hold_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    drop_after: int | None = None
    malformed_at: int | None = None
    endless: bool = False
    finish_reason: str | None = "stop"
    send_done: bool = True
    close_without_finish: bool = False
    usage_chunk: bool = False
    empty_first_chunk: bool = True


@dataclass
class _Answer:
    """What to send back: a plain body, or an SSE stream when `script` is set."""

    status: int
    headers: list[tuple[str, str]]
    content: bytes = b""
    delay_s: float = 0.0
    script: Script | None = None
    model: str = DEFAULT_MODEL


class _Dropped(Exception):
    """Raised to cut a connection mid-body, as a crashing or overloaded upstream would."""


class FakeUpstream:
    """Scripts, request log and stream counters, shared by the transport and the real server."""

    def __init__(self, default: Script | None = None) -> None:
        self.default = default or Script()
        self.responder: Callable[[JsonDict], Script] | None = None
        self.requests: list[JsonDict] = []
        self.request_headers: list[dict[str, str]] = []
        self.open_streams = 0
        self.max_open_streams = 0
        self.completed = 0
        self.client_closed = 0
        self.dropped = 0  # bodies the fake cut short: drop_after, or the server shutting down
        # One stream at a time, as llama.cpp's server by default: a new request cuts the
        # running stream, whose body then ends early (a clean end, no finish reason).
        self.one_at_a_time = False
        self.cut = 0  # streams ended early that way
        self._turns: list[_Turn] = []
        self._turns_taken = 0
        self._queue: deque[Script] = deque()
        # Queued scripts already taken by a request: release() must still reach their holds.
        self._taken: list[Script] = []
        # The real server runs on another thread, so every counter update takes this lock.
        self._lock = threading.Lock()

    def script(self, *scripts: Script) -> None:
        """Queue scripts for the next requests, one each, before falling back to `default`."""
        with self._lock:
            self._queue.extend(scripts)

    def transport(self) -> httpx2.AsyncBaseTransport:
        """An in-process transport for `httpx2.AsyncClient(transport=...)`."""
        return _FakeTransport(self)

    async def wait_for(
        self,
        predicate: Callable[[FakeUpstream], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 - a built-in backstop so no wait can hang a test
    ) -> None:
        """Wait until `predicate(self)` holds, or raise TimeoutError after `timeout` seconds."""
        with anyio.fail_after(timeout):
            # Polling, not an anyio.Event: counters also change on the server's own thread.
            while not predicate(self):  # noqa: ASYNC110
                await anyio.sleep(0.005)

    def state(self) -> JsonDict:
        """The counters, as the control endpoint reports them."""
        with self._lock:
            return {
                "requests": len(self.requests),
                "open_streams": self.open_streams,
                "max_open_streams": self.max_open_streams,
                "completed": self.completed,
                "client_closed": self.client_closed,
                "dropped": self.dropped,
                "cut": self.cut,
            }

    def reset(self, default: Script | None = None) -> None:
        """Back to a fresh fake for the next test, in place: held streams released, the queue
        emptied, requests forgotten, the counters zeroed (streams still open stay counted)."""
        with self._lock:
            held = [self.default, *self._queue, *self._taken]
            self.default = default or Script()
            self._queue.clear()
            self._taken.clear()
            self.requests.clear()
            self.request_headers.clear()
            self.max_open_streams = self.open_streams
            self.completed = self.client_closed = self.dropped = self.cut = 0
        for script in held:
            script.release.set()

    def release(self) -> None:
        """Let every held stream go on: the default script's, and the queued scripts' whether a
        request took them already or not."""
        with self._lock:
            held = [self.default, *self._queue, *self._taken]
        for script in held:
            script.release.set()

    def _control(self, method: str, route: str, body: bytes) -> _Answer:
        """The fake scripted over HTTP, for a fake running as a process of its own:
        GET /_fake/state (counters), GET /_fake/requests (request bodies),
        POST /_fake/script {"default": {...}, "queue": [{...}, ...]} (Script fields by name),
        POST /_fake/release (held streams go on), POST /_fake/reset (a fresh fake)."""
        try:
            given = json.loads(body) if body else {}
            if method == "GET" and route == "/_fake/state":
                return _json_answer(self.state())
            if method == "GET" and route == "/_fake/requests":
                with self._lock:
                    return _json_answer(list(self.requests))
            if method == "POST" and route == "/_fake/script":
                queue = [_script_from(fields) for fields in given.get("queue", [])]
                if "default" in given:
                    with self._lock:
                        self.default = _script_from(given["default"])
                self.script(*queue)
                return _json_answer(self.state())
            if method == "POST" and route == "/_fake/release":
                self.release()
                return _json_answer(self.state())
            if method == "POST" and route == "/_fake/reset":
                self.reset(_script_from(given["default"]) if "default" in given else None)
                return _json_answer(self.state())
        except (ValueError, TypeError, AttributeError) as error:
            return _Answer(400, [("content-type", "text/plain")], str(error).encode())
        return _error_answer(404, None)

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes) -> _Answer:
        route = path.removeprefix("/v1")  # base_url may or may not end in /v1
        if route.startswith("/_fake/"):
            return self._control(method, route, body)
        if method == "GET" and route == "/models":
            models = {"object": "list", "data": [_model_entry()]}
            return _Answer(200, [("content-type", "application/json")], _json(models))
        if method != "POST" or route != "/chat/completions":
            return _error_answer(404, None)
        try:
            request = json.loads(body)
        except ValueError:
            return _error_answer(400, None)
        with self._lock:
            self.requests.append(request)
            self.request_headers.append(headers)
            responder = self.responder
            queued = None if responder or not self._queue else self._queue.popleft()
            if queued is not None and queued.hold_after is not None:
                self._taken.append(queued)
        # Called outside the lock so a responder may itself inspect or script the fake.
        script = responder(request) if responder else queued or self.default
        if script.status != 200:
            return _error_answer(script.status, script.retry_after, script.headers_delay_s)
        model = str(request.get("model", DEFAULT_MODEL))
        delay_s = script.headers_delay_s
        return _Answer(200, _SSE_HEADERS, delay_s=delay_s, script=script, model=model)

    def _take_turn(self, interrupted: anyio.Event) -> _Turn:
        """A new stream: in one-at-a-time mode every running stream is cut (and woken)."""
        with self._lock:
            self._turns_taken += 1
            turn = _Turn(interrupted, done_when_cut=self._turns_taken % 2 == 0)
            running, self._turns = (self._turns, [turn]) if self.one_at_a_time else ([], [])
        for other in running:
            other.cut = True
            other.interrupted.set()
        return turn

    def _end_turn(self, turn: _Turn) -> None:
        with self._lock:
            if turn in self._turns:
                self._turns.remove(turn)

    def _open_stream(self) -> Callable[[Outcome], None]:
        """Count a stream as open; the returned callback records how it ended, once."""
        with self._lock:
            self.open_streams += 1
            self.max_open_streams = max(self.max_open_streams, self.open_streams)
        ended = False

        def end(outcome: Outcome) -> None:
            nonlocal ended
            with self._lock:
                if ended:
                    return
                ended = True
                self.open_streams -= 1
                setattr(self, outcome, getattr(self, outcome) + 1)

        return end


@dataclass(eq=False)
class _Turn:
    """One stream's hold on a one-at-a-time fake: `cut` once a newer request took it over."""

    interrupted: anyio.Event
    done_when_cut: bool = False
    cut: bool = False


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _json_answer(value: object) -> _Answer:
    return _Answer(200, [("content-type", "application/json")], _json(value))


def _script_from(fields: JsonDict) -> Script:
    """A Script from its fields by name (JSON); `release` is the fake's own."""
    if not isinstance(fields, dict) or "release" in fields:
        raise ValueError(f"not a script: {fields!r}")
    return Script(**fields)


def _model_entry() -> JsonDict:
    return {"id": DEFAULT_MODEL, "object": "model", "created": 0, "owned_by": "fake"}


def _error_answer(status: int, retry_after: str | None, delay_s: float = 0.0) -> _Answer:
    message, kind, code = _ERRORS.get(status, ("Upstream error (fake).", "server_error", None))
    headers = [("content-type", "application/json")]
    if retry_after is not None:
        headers.append(("retry-after", retry_after))
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return _Answer(status, headers, _json(body), delay_s)


def _chunk(model: str, delta: JsonDict, finish_reason: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return _event(_envelope(model, [choice]))


def _envelope(model: str, choices: list[JsonDict]) -> JsonDict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": choices,
    }


def _event(data: JsonDict) -> bytes:
    return b"data: " + _json(data) + b"\n\n"


async def _pause(seconds: float, interrupted: anyio.Event) -> bool:
    """Wait `seconds` unless interrupted sooner; return whether the stream was interrupted."""
    if seconds > 0:
        with anyio.move_on_after(seconds):
            await interrupted.wait()
    else:
        await anyio.lowlevel.checkpoint()  # keeps zero-delay endless streams from hogging the loop
    return interrupted.is_set()


async def _sse_body(
    script: Script, model: str, interrupted: anyio.Event, turn: _Turn | None = None
) -> AsyncGenerator[bytes, None]:
    """Yield one scripted SSE body; stop early once interrupted, raise _Dropped to cut it.
    A cut stream (one-at-a-time mode) ends as llama.cpp's do: the role chunk, then the end of
    the body, every second time after a `[DONE]` with no finish reason."""
    if await _pause(script.first_delay_s, interrupted):
        if turn is not None and turn.cut:
            if script.empty_first_chunk:
                yield _chunk(model, {"role": "assistant", "content": ""})
            if turn.done_when_cut:
                yield _DONE
        return
    if script.empty_first_chunk:
        yield _chunk(model, {"role": "assistant", "content": ""})
    pieces = itertools.cycle(script.chunks) if script.endless else iter(script.chunks)
    # Runs one step past the last chunk so stall/drop "after all chunks" also work.
    for index in itertools.count():
        if index == script.stall_after:
            await interrupted.wait()  # until the client leaves or the server stops
            if turn is not None and turn.cut and turn.done_when_cut:
                yield _DONE
            return
        if index == script.hold_after:
            # Polled: the test sets `release` on its own thread, not in this event loop.
            while not script.release.is_set():
                if await _pause(0.01, interrupted):
                    return
        if index == script.drop_after:
            raise _Dropped
        text = next(pieces, None)
        if text is None:
            break
        if await _pause(script.chunk_delay_s if index else 0.0, interrupted):
            if turn is not None and turn.cut and turn.done_when_cut:
                yield _DONE
            return
        yield _MALFORMED if index == script.malformed_at else _chunk(model, {"content": text})
    if script.close_without_finish:
        return
    if script.finish_reason is not None:
        yield _chunk(model, {}, script.finish_reason)
    if script.usage_chunk:
        usage = {"prompt_tokens": 10, "completion_tokens": len(script.chunks)}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        yield _event({**_envelope(model, []), "usage": usage})
    if script.send_done:
        yield _DONE


class _FakeTransport(httpx2.AsyncBaseTransport):
    """Answers httpx2 requests in-process, without sockets."""

    def __init__(self, upstream: FakeUpstream) -> None:
        self._upstream = upstream

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        headers = dict(request.headers.items())
        answer = self._upstream._answer(request.method, request.url.path, headers, body)
        if answer.script is None:
            await anyio.sleep(answer.delay_s)
            return httpx2.Response(answer.status, headers=answer.headers, content=answer.content)
        stream = _TransportBody(self._upstream, answer.script, answer.model)
        try:
            await anyio.sleep(answer.delay_s)
        except BaseException:
            stream.leave()  # the client gave up while waiting for headers
            raise
        return httpx2.Response(200, headers=answer.headers, stream=stream)


class _TransportBody(httpx2.AsyncByteStream):
    """One scripted SSE body for an in-process client; notices the client leaving early."""

    def __init__(self, upstream: FakeUpstream, script: Script, model: str) -> None:
        self._upstream = upstream
        self._end = upstream._open_stream()
        self._interrupted = anyio.Event()
        self._pieces = self._produce(script, model)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # httpx2 may iterate a stream more than once (the SDK drains it after [DONE]),
        # so resume the single body generator instead of restarting the script.
        async for piece in self._pieces:
            yield piece

    async def _produce(self, script: Script, model: str) -> AsyncGenerator[bytes, None]:
        outcome: Outcome = "client_closed"  # unless the body reaches its end or is dropped
        turn = self._upstream._take_turn(self._interrupted)
        try:
            async with aclosing(_sse_body(script, model, self._interrupted, turn)) as body:
                async for piece in body:
                    yield piece
            if turn.cut:
                outcome = "cut"
            elif not self._interrupted.is_set():
                outcome = "completed"
        except _Dropped:
            outcome = "dropped"
            message = "peer closed connection without sending complete message body (fake drop)"
            raise httpx2.RemoteProtocolError(message) from None
        finally:
            self._upstream._end_turn(turn)
            self._end(outcome)

    def leave(self) -> None:
        """Record the client leaving and wake a stall or delay in the reading task."""
        self._interrupted.set()
        self._end("client_closed")  # no-op if the body already ended

    async def aclose(self) -> None:
        self.leave()
        # RuntimeError means a read is in flight in another task (say, stalled in the body):
        # that read ends on its own now that it has been woken.
        with suppress(RuntimeError):
            await self._pieces.aclose()


class _AsgiApp:
    """The fake as an ASGI app; `stopping` is set on the server's loop at shutdown."""

    def __init__(self, upstream: FakeUpstream) -> None:
        self.upstream = upstream
        self.stopping = asyncio.Event()  # asyncio, not anyio: it is created off the server loop

    async def __call__(
        self,
        scope: JsonDict,
        receive: Callable[[], Awaitable[JsonDict]],
        send: Callable[[JsonDict], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        answer = self.upstream._answer(scope["method"], scope["path"], headers, bytes(body))
        end = self.upstream._open_stream() if answer.script else None
        interrupted = anyio.Event()
        turn = self.upstream._take_turn(interrupted) if answer.script else None
        left = finished = dropped = False

        async def watch_client() -> None:
            nonlocal left
            while (await receive())["type"] != "http.disconnect":
                pass
            left = True
            interrupted.set()

        async def watch_stop() -> None:
            await self.stopping.wait()
            interrupted.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch_client)
            tg.start_soon(watch_stop)
            try:
                finished = await _send_answer(answer, send, interrupted, turn)
            except _Dropped:
                dropped = True
            except OSError:
                left = True  # a failed send means the client is gone
            tg.cancel_scope.cancel()
        # watch_client also fires once the response is complete, so `finished` wins.
        if turn is not None:
            self.upstream._end_turn(turn)
        outcome: Outcome = (
            "completed" if finished else "client_closed" if left and not dropped else "dropped"
        )
        if finished and turn is not None and turn.cut:
            outcome = "cut"
        if end is not None:
            end(outcome)
        if outcome == "dropped":
            raise _Dropped  # uvicorn then closes the socket mid-body: a real broken stream


async def _send_answer(
    answer: _Answer,
    send: Callable[[JsonDict], Awaitable[None]],
    interrupted: anyio.Event,
    turn: _Turn | None = None,
) -> bool:
    """Send `answer` over ASGI; return whether it was sent in full."""
    if await _pause(answer.delay_s, interrupted) and not (turn is not None and turn.cut):
        return False
    headers = [(k.encode(), v.encode()) for k, v in answer.headers]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    if answer.script is None:
        await send({"type": "http.response.body", "body": answer.content})
        return True
    async with aclosing(_sse_body(answer.script, answer.model, interrupted, turn)) as body:
        async for piece in body:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
    if interrupted.is_set() and not (turn is not None and turn.cut):
        return False
    await send({"type": "http.response.body", "body": b""})
    return True


class _HideDrops(logging.Filter):
    """Drop uvicorn's traceback for connections the fake cuts on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Dropped))


class _ServerThread(threading.Thread):
    """Runs uvicorn on its own event loop so sync code, async tests and the CLI can share it."""

    def __init__(self, upstream: FakeUpstream, sock: socket.socket) -> None:
        super().__init__(name="fake-upstream", daemon=True)
        self.app = _AsgiApp(upstream)
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            ws="none",
            access_log=False,
            log_config=None,  # leave the host process's logging alone
            timeout_graceful_shutdown=5,  # backstop only: stop() ends stalls itself
        )
        self.server = uvicorn.Server(config)
        self.loop: asyncio.AbstractEventLoop | None = None
        self._sock = sock

    def run(self) -> None:
        with asyncio.Runner() as runner:
            self.loop = runner.get_loop()
            runner.run(self.server.serve(sockets=[self._sock]))

    def wait_started(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake upstream server failed to start")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.loop is not None:
            with suppress(RuntimeError):  # the loop already closed: nothing left to wake
                self.loop.call_soon_threadsafe(self.app.stopping.set)
        self.join(timeout)
        if self.is_alive():
            raise RuntimeError("fake upstream server did not shut down")


@contextmanager
def serve(upstream: FakeUpstream, port: int = 0) -> Iterator[str]:
    """Serve `upstream` on 127.0.0.1 from a background thread; yield the `/v1` base URL."""
    hide_drops = _HideDrops()
    logging.getLogger("uvicorn.error").addFilter(hide_drops)
    # Binding here (port 0 = any free port) avoids a race between picking and using a port.
    with socket.create_server(("127.0.0.1", port)) as sock:
        thread = _ServerThread(upstream, sock)
        thread.start()
        try:
            thread.wait_started()
            yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
        finally:
            thread.stop()
            logging.getLogger("uvicorn.error").removeFilter(hide_drops)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--first-delay", type=float, default=0.0, help="seconds before token 1")
    parser.add_argument("--tokens", type=int, default=len(DEFAULT_CHUNKS))
    parser.add_argument("--rate", type=float, default=0.0, help="tokens/s; 0 is unthrottled")
    parser.add_argument(
        "--quick-max-tokens",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="answer requests whose max_tokens is N with the short default reply at once "
        "(repeatable; benchmarks use it so follow-up steps do not compete with the streams measured)",
    )
    parser.add_argument(
        "--one-at-a-time",
        action="store_true",
        help="serve one stream at a time: a new request cuts the running one (llama.cpp's way)",
    )
    args = parser.parse_args(argv)
    script = Script(
        chunks=[DEFAULT_CHUNKS[i % len(DEFAULT_CHUNKS)] for i in range(args.tokens)],
        first_delay_s=args.first_delay,
        chunk_delay_s=1 / args.rate if args.rate > 0 else 0.0,
    )
    upstream = FakeUpstream(script)
    upstream.one_at_a_time = args.one_at_a_time
    if args.quick_max_tokens:
        quick, short = set(args.quick_max_tokens), Script()

        def respond(request: JsonDict) -> Script:
            cap = request.get("max_tokens", request.get("max_completion_tokens"))
            return short if cap in quick else script

        upstream.responder = respond
    # Blocked before the server thread starts, so only sigwait below ever sees them.
    signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    with serve(upstream, port=args.port) as url:
        print(f"listening {url}", flush=True)
        signal.sigwait(signals)


if __name__ == "__main__":
    main()
