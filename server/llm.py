"""The OpenAI-compatible model: its requests, deadlines and retries, and the one client of the process."""

from __future__ import annotations

import contextlib
import email.utils
import random
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import httpx2
import openai
import orjson

from server.deadlines import ReadDeadline
from server.generators.journey import Prompt
from server.model import (
    ChunkTimeout,
    ConnectionFailed,
    Deadlines,
    Delta,
    FirstTokenTimeout,
    IncompleteStream,
    MalformedChunk,
    ModelError,
    RateLimited,
    StepTimeout,
    UpstreamStatus,
)
from server.settings import Settings
from server.watch import UNWATCHED, Attempt, Watcher

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 8.0
DRAIN_S = 0.5


class _Retryable(Exception):
    def __init__(self, error: ModelError, retry_after: float | None) -> None:
        self.error = error
        self.retry_after = retry_after


class OpenAIModel:
    """Any OpenAI-compatible streaming chat endpoint, through one shared AsyncOpenAI client."""

    live = True

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        *,
        name: str,
        deadlines: Deadlines,
        max_tokens_param: str = "max_tokens",
        temperature: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._client = client
        self.name = name
        self._deadlines = deadlines
        self._max_tokens_param = max_tokens_param
        self._temperature = temperature
        self._clock = clock
        self._jitter = jitter
        self._sleep = sleep
        # The request's URL and headers, taken from the client at the first request.
        self._target: tuple[httpx2.URL, list[tuple[str, str]]] | None = None

    async def stream(
        self, prompt: Prompt, *, deadline: float, watcher: Watcher = UNWATCHED
    ) -> AsyncGenerator[Delta]:
        of = self._deadlines.max_attempts
        attempt = 0
        while True:
            attempt += 1
            started = self._clock()
            try:
                upstream, first = await self._open(prompt, deadline, attempt)
                break
            except _Retryable as retry:
                delay = self._backoff(attempt, retry.retry_after)
                reason = retry.error.reason
                if attempt >= of or self._clock() + delay >= deadline:
                    retry.error.attempts = attempt
                    watcher.ended(Attempt(attempt, of, reason, started))
                    raise retry.error from None
                ended = Attempt(attempt, of, reason, started, retry_in_s=delay)
                watcher.ended(ended)
                await self._sleep(delay)
                await watcher.before_retry(ended)
            except ModelError as error:
                watcher.ended(Attempt(attempt, of, error.reason, started))
                raise
        first_token_s = self._clock() - started
        outcome = "cancelled"
        try:
            yield first
            if not first.finish_reason:
                async for delta in self._tail(upstream, deadline, attempt):
                    yield delta
                    if delta.finish_reason:
                        break
            outcome = "ok"
            await upstream.drain()
        except ConnectionFailed as error:
            # Text was already shown: the answer broke off, which is not the same as a model
            # that could not be reached (and tells the admission the upstream cut us).
            outcome = IncompleteStream.reason
            raise IncompleteStream(
                f"the stream broke off mid-answer: {error.detail}", attempts=attempt
            ) from None
        except ModelError as error:
            outcome = error.reason
            raise
        finally:
            await upstream.close()
            watcher.ended(Attempt(attempt, of, outcome, started, first_token_s))

    async def _open(self, prompt: Prompt, deadline: float, attempt: int) -> tuple[_Upstream, Delta]:
        """Send the request and wait for its first text, both under the first-token deadline."""
        started = self._clock()
        budget = min(self._deadlines.first_token_s, deadline - started)
        if budget <= 0:
            raise StepTimeout("no time left in the step before the request", attempts=attempt)
        upstream: _Upstream | None = None
        try:
            with anyio.fail_after(budget):
                body = {
                    "model": self.name,
                    "messages": list(prompt.messages),
                    "stream": True,
                    "temperature": self._temperature,
                    self._max_tokens_param: prompt.max_tokens,
                }
                response = await self._send(body)
                upstream = _Upstream(response, attempt)
                first = await upstream.read()
                while first is not None and not first.text and not first.finish_reason:
                    first = await upstream.read()
                if first is None:
                    raise IncompleteStream("the stream ended before any text", attempts=attempt)
                return upstream, first
        except TimeoutError:
            await _close(upstream)
            if budget < self._deadlines.first_token_s:
                raise StepTimeout(
                    f"step deadline passed after {budget:.1f}s waiting for the first token",
                    attempts=attempt,
                ) from None
            slow = FirstTokenTimeout(f"no token within {budget:.1f}s", attempts=attempt)
            raise _Retryable(slow, None) from None
        except openai.RateLimitError as exc:
            raise _Retryable(
                RateLimited(f"429 from upstream: {_message(exc)}", attempts=attempt),
                _retry_after(exc.response),
            ) from None
        except openai.APIStatusError as exc:
            error = UpstreamStatus(
                f"{exc.status_code} from upstream: {_message(exc)}", attempts=attempt
            )
            if exc.status_code >= 500 or exc.status_code == 408:
                raise _Retryable(error, _retry_after(exc.response)) from None
            raise error from None
        except (openai.APIConnectionError, httpx2.TransportError) as exc:
            await _close(upstream)
            raise _Retryable(ConnectionFailed(_describe(exc), attempts=attempt), None) from None
        except IncompleteStream as error:
            await _close(upstream)
            raise _Retryable(error, None) from None
        except ConnectionFailed as error:
            # The response had begun and its body broke off before any text: the upstream cut
            # this stream (llama.cpp's server does when another request arrives). Retryable,
            # and a sign of overload, which a refused connection is not.
            await _close(upstream)
            cut = IncompleteStream(
                f"the stream broke off before any text: {error.detail}", attempts=attempt
            )
            raise _Retryable(cut, None) from None
        except ModelError:
            await _close(upstream)
            raise

    async def _send(self, body: dict[str, Any]) -> httpx2.Response:
        """POST the chat completion on the SDK client's own HTTP client, as the SDK would (its
        URL, headers and error types), and hand back the response with its body unread.

        Built here rather than by the SDK's `post`: it copies its options and builds headers,
        URL and an idempotency key for every request (~140 us more than this per request, paid
        in series by a burst of sessions, bench/RESULTS.md); with the SDK's retries off, none
        of that does anything here. Its errors are the SDK's: a status error is built by the
        client itself from the response, a failed connection is an APIConnectionError."""
        if self._target is None:
            client = self._client
            base = client.base_url
            # A URL object, not its text: the client parses a text URL again for each request.
            url = base.copy_with(raw_path=base.raw_path + b"chat/completions")
            merged = {**client.default_headers, **client.auth_headers}
            # Omit() marks a header the SDK leaves out (no organization, no project).
            headers = [(name, value) for name, value in merged.items() if isinstance(value, str)]
            self._target = (url, headers)
        url, headers = self._target
        http = self._client._client
        request = http.build_request("POST", url, content=orjson.dumps(body), headers=headers)
        try:
            response = await http.send(request, stream=True)
        except httpx2.TimeoutException as exc:
            raise openai.APITimeoutError(request=request) from exc
        except (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream) as exc:
            raise openai.APIConnectionError(request=request) from exc
        if not response.is_success:
            try:
                await response.aread()
            finally:
                await response.aclose()
            raise self._client._make_status_error_from_response(response)
        return response

    async def _tail(
        self, upstream: _Upstream, deadline: float, attempt: int
    ) -> AsyncGenerator[Delta]:
        timer = ReadDeadline(self._deadlines.chunk_s, deadline, self._clock)
        try:
            while True:
                delta = await timer.read(upstream.read)
                if timer.expired == "step":
                    raise StepTimeout("the step deadline passed mid-stream", attempts=attempt)
                if timer.expired == "chunk":
                    wait = self._deadlines.chunk_s
                    raise ChunkTimeout(f"no chunk for {wait:.1f}s", attempts=attempt)
                if delta is None:
                    raise IncompleteStream(
                        "the stream ended without a finish reason", attempts=attempt
                    )
                if delta.text or delta.finish_reason:
                    yield delta
        finally:
            timer.close()

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + self._jitter() / 2)


class _Upstream:
    """One streaming response, read as OpenAI-style SSE: every network read becomes at most one
    Delta (the text of all the events it held, and a finish reason if one came)."""

    def __init__(self, response: httpx2.Response, attempt: int) -> None:
        self._response = response
        self._body: AsyncIterator[bytes] = response.aiter_bytes()
        self._attempt = attempt
        self._buffer = b""

    async def read(self) -> Delta | None:
        """The next Delta (possibly empty), or None when the body ended."""
        try:
            data = await anext(self._body, None)
        except (openai.APIError, httpx2.TransportError) as exc:
            raise ConnectionFailed(_describe(exc), attempts=self._attempt) from None
        if data is None:
            return None
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        texts: list[str] = []
        finish: str | None = None
        for line in lines:
            if not line.startswith(b"data:"):
                continue  # event names, ids, comments and blank lines carry no text
            payload = line[5:].strip()
            if payload == b"[DONE]":
                continue
            text, reason = _parse_event(payload, self._attempt)
            texts.append(text)
            finish = reason or finish
        return Delta("".join(texts), finish)

    async def drain(self) -> None:
        """Read what follows the finish reason (usage, `[DONE]`), briefly, so the connection
        ends cleanly and can be reused instead of being torn down mid-body."""
        with anyio.move_on_after(DRAIN_S), contextlib.suppress(ModelError):
            while await self.read() is not None:
                pass

    async def close(self) -> None:
        with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
            await self._response.aclose()


def _parse_event(payload: bytes, attempt: int) -> tuple[str, str | None]:
    """Text and finish reason of one chunk; an empty `choices` (usage, role-only) is no text."""
    try:
        # orjson, not json: a quarter of the time per chunk, which matters once per network read.
        chunk = orjson.loads(payload)
    except ValueError:  # orjson.JSONDecodeError is a ValueError
        raise MalformedChunk("a chunk that is not JSON", attempts=attempt) from None
    if not isinstance(chunk, dict):
        raise MalformedChunk("a chunk that is not an object", attempts=attempt)
    if "error" in chunk:
        raise UpstreamStatus(
            f"error inside the stream: {str(chunk['error'])[:200]}", attempts=attempt
        )
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        raise MalformedChunk("a chunk without a choices list", attempts=attempt)
    if not choices:
        return "", None
    choice = choices[0]
    delta = choice.get("delta") if isinstance(choice, dict) else None
    content = delta.get("content") if isinstance(delta, dict) else None
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    if content is not None and not isinstance(content, str):
        raise MalformedChunk("a chunk whose content is not text", attempts=attempt)
    if finish is not None and not isinstance(finish, str):
        raise MalformedChunk("a chunk whose finish reason is not text", attempts=attempt)
    return content or "", finish


async def _close(upstream: _Upstream | None) -> None:
    if upstream is not None:
        await upstream.close()


def _retry_after(response: httpx2.Response) -> float | None:
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _message(exc: openai.APIStatusError) -> str:
    return str(exc.message)[:200]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def build_client(
    settings: Settings, transport: httpx2.AsyncBaseTransport | None = None
) -> openai.AsyncOpenAI:
    """The one AsyncOpenAI client of the process: SDK retries off, explicit timeouts, a sized pool."""
    limits = settings.limits
    timeout = httpx2.Timeout(
        connect=settings.llm.connect_timeout_s,
        read=max(limits.first_token_timeout_s, limits.chunk_timeout_s) + 5,
        write=10.0,
        pool=limits.queue_timeout_s + limits.first_token_timeout_s,
    )
    pool = httpx2.Limits(
        max_connections=limits.max_concurrent_ai_requests + 4,
        max_keepalive_connections=limits.max_concurrent_ai_requests,
    )
    # aiohttp carries the requests (its C HTTP parser): receiving through httpx2's pure-Python
    # h11/httpcore2 layers cost about 60 us of CPU per chunk, aiohttp about 35 us (bench/RESULTS.md).
    # An injected transport (the tests' in-process fake) is used as it is, through httpx2.
    http_client = openai.DefaultAioHttpClient(
        timeout=timeout, limits=pool, transport=transport, follow_redirects=False
    )
    return openai.AsyncOpenAI(
        api_key=settings.api_key or "no-key",
        base_url=settings.llm.base_url or None,
        max_retries=0,
        timeout=timeout,
        http_client=http_client,
    )
