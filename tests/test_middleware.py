"""The pure ASGI middleware: request time limit, high-risk lines, body limit, security headers."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from server.app import create_app
from server.logs import JsonFormatter
from server.middleware import BodyLimit, RequestContext, RequestGuard, SecurityHeaders
from server.pages import is_stream_path
from server.settings import Settings
from tests.conftest import SettingsFactory
from tests.servers import serve_app
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

TIME_LIMIT_S = 0.2  # for the tests that meet the limit; the others get a generous one
GENEROUS_S = 30.0
MAX_BYTES = 1024


class Memory:
    """The RSS reading the guard sees; routes grow it to simulate a request that allocates."""

    def __init__(self) -> None:
        self.mb = 100.0

    def __call__(self) -> float:
        return self.mb


class TinyApp:
    """A Starlette app of test routes behind the real middleware classes, served in-process."""

    def __init__(
        self,
        *,
        time_limit_s: float = GENEROUS_S,
        high_risk_s: float = GENEROUS_S,
        high_risk_rss_mb: float = 50.0,
    ) -> None:
        self.memory = Memory()
        self.high_risk = 0
        self.slow_started = anyio.Event()
        self.slow_cancelled = anyio.Event()
        self.stream_started = anyio.Event()
        self.bodies: list[int] = []  # bytes each upload handler saw, when it saw the whole body
        self.body_seen = 0  # bytes handed to an upload handler so far
        self.app = Starlette(
            routes=[
                Route("/fast", self.fast),
                Route("/slow", self.slow),
                Route("/s/abc/steps/0/stream", self.stream),
                Route("/grow", self.grow),
                Route("/upload", self.upload, methods=["POST"]),
            ],
            middleware=[
                Middleware(RequestContext),
                Middleware(SecurityHeaders),
                Middleware(
                    RequestGuard,
                    time_limit_s=time_limit_s,
                    high_risk_s=high_risk_s,
                    high_risk_rss_mb=high_risk_rss_mb,
                    is_stream=is_stream_path,
                    reject=refusal(503),
                    rss_mb=self.memory,
                    on_high_risk=self.count_high_risk,
                ),
                Middleware(BodyLimit, max_bytes=MAX_BYTES, reject=refusal(413)),
            ],
        )

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://tiny"
        )

    def count_high_risk(self) -> None:
        self.high_risk += 1

    async def fast(self, request: Request) -> Response:
        return PlainTextResponse("fast")

    async def slow(self, request: Request) -> Response:
        self.slow_started.set()
        try:
            await anyio.sleep_forever()
        finally:
            self.slow_cancelled.set()
        raise AssertionError("unreachable")

    async def stream(self, request: Request) -> Response:
        self.stream_started.set()
        # Outlives a non-stream request that started later and was cut by the time limit.
        await self.slow_cancelled.wait()
        self.memory.mb += float(request.query_params.get("mb", "0"))
        return PlainTextResponse("streamed")

    async def grow(self, request: Request) -> Response:
        self.memory.mb += float(request.query_params.get("mb", "0"))
        await anyio.sleep(float(request.query_params.get("s", "0")))
        return PlainTextResponse("grown")

    async def upload(self, request: Request) -> Response:
        async for chunk in request.stream():
            self.body_seen += len(chunk)
        self.bodies.append(self.body_seen)
        return PlainTextResponse(f"got {self.body_seen}")


def refusal(status: int) -> ASGIApp:
    async def respond(scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse(f"refused {status}", status_code=status)(scope, receive, send)

    return respond


def lines(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    formatter = JsonFormatter()
    return [
        json.loads(formatter.format(record))
        for record in caplog.records
        if record.getMessage() == event
    ]


async def test_the_time_limit_answers_a_slow_request_and_logs_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="crossroads")
    tiny = TinyApp(time_limit_s=TIME_LIMIT_S)
    async with tiny.client() as client:
        with anyio.fail_after(10):
            response = await client.get("/slow")
    assert response.status_code == 503
    assert response.text == "refused 503"
    assert tiny.slow_cancelled.is_set()
    assert response.headers["x-content-type-options"] == "nosniff"
    [line] = lines(caplog, "Request terminated to prevent worker timeout")
    assert line["reason"] == "request_time_limit"
    assert line["path"] == "/slow" and line["method"] == "GET"
    assert line["limit_s"] == TIME_LIMIT_S
    assert line["level"] == "error"
    assert line["request_id"] == response.headers["x-request-id"]


async def test_a_fast_request_is_not_touched(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="crossroads")
    tiny = TinyApp()
    async with tiny.client() as client:
        response = await client.get("/fast")
    assert response.status_code == 200 and response.text == "fast"
    assert lines(caplog, "Request terminated to prevent worker timeout") == []
    assert lines(caplog, "High-risk request completed") == []
    assert tiny.high_risk == 0


async def test_a_stream_is_not_bound_by_the_time_limit(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="crossroads")
    tiny = TinyApp(time_limit_s=TIME_LIMIT_S)
    responses: dict[str, httpx.Response] = {}
    async with tiny.client() as client:

        async def get(path: str) -> None:
            responses[path] = await client.get(path)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(get, "/s/abc/steps/0/stream")
                await tiny.stream_started.wait()
                # Started after the stream and cut by the limit: the stream ran longer still.
                tg.start_soon(get, "/slow")
    assert responses["/slow"].status_code == 503
    assert responses["/s/abc/steps/0/stream"].status_code == 200
    assert responses["/s/abc/steps/0/stream"].text == "streamed"
    [line] = lines(caplog, "Request terminated to prevent worker timeout")
    assert line["path"] == "/slow"


async def test_a_request_that_grew_memory_is_logged_as_high_risk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="crossroads")
    tiny = TinyApp(high_risk_rss_mb=50)
    async with tiny.client() as client:
        small = await client.get("/grow", params={"mb": "20"})
        assert lines(caplog, "High-risk request completed") == []
        large = await client.get("/grow", params={"mb": "80"})
    assert small.status_code == large.status_code == 200
    [line] = lines(caplog, "High-risk request completed")
    assert line["path"] == "/grow" and line["method"] == "GET"
    assert line["rss_delta_mb"] == 80
    assert line["rss_mb"] == 200
    assert isinstance(line["duration_s"], float)
    assert line["level"] == "warning"
    assert line["request_id"] == large.headers["x-request-id"]
    assert tiny.high_risk == 1


async def test_a_request_that_ran_long_is_logged_as_high_risk(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="crossroads")
    tiny = TinyApp(high_risk_s=0.05)
    async with tiny.client() as client:
        response = await client.get("/grow", params={"s": "0.1"})
    assert response.status_code == 200
    [line] = lines(caplog, "High-risk request completed")
    assert line["duration_s"] >= 0.05
    assert line["rss_delta_mb"] == 0
    assert tiny.high_risk == 1


async def test_a_long_stream_is_not_high_risk_unless_it_grew_memory(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="crossroads")
    tiny = TinyApp(high_risk_s=0.05)
    async with tiny.client() as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.get, "/s/abc/steps/0/stream")
            await tiny.stream_started.wait()
            await anyio.sleep(0.1)  # past high_risk_s, as every step's stream is
            tiny.slow_cancelled.set()
        assert lines(caplog, "High-risk request completed") == []
        grown = await client.get("/s/abc/steps/0/stream", params={"mb": "80"})
    assert grown.status_code == 200
    [line] = lines(caplog, "High-risk request completed")
    assert line["path"] == "/s/abc/steps/0/stream"
    assert line["rss_delta_mb"] == 80
    assert tiny.high_risk == 1


async def test_a_body_over_the_limit_is_refused_by_its_content_length() -> None:
    tiny = TinyApp()
    async with tiny.client() as client:
        response = await client.post("/upload", content=b"x" * (MAX_BYTES + 1))
        fits = await client.post("/upload", content=b"x" * MAX_BYTES)
        bad = await client.post("/upload", content=b"x", headers={"content-length": "a lot"})
    assert response.status_code == 413 and response.text == "refused 413"
    assert fits.status_code == 200 and fits.text == f"got {MAX_BYTES}"
    assert bad.status_code == 413
    assert tiny.bodies == [MAX_BYTES]


async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit() -> None:
    tiny = TinyApp()
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 256
            yield b"y" * 256

    async with tiny.client() as client:
        with anyio.fail_after(10):
            response = await client.post("/upload", content=endless())
    assert response.status_code == 413
    assert "content-length" not in response.request.headers
    # The handler never saw more than the limit, and nothing was read past one extra piece.
    assert tiny.bodies == []
    assert tiny.body_seen <= MAX_BYTES
    assert sent <= MAX_BYTES + 256


# The same middleware in the real app, served by uvicorn.


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(
        limits={"worker_time_limit_s": 2.0, "max_body_bytes": MAX_BYTES},
        journey={"questions_per_session": 1},
    )


@pytest.fixture
def base_url(settings: Settings) -> Iterator[str]:
    app = create_app(settings)

    async def slow(request: Request) -> Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    # A route slower than any real one, to meet the time limit in the real app's stack.
    app.router.routes.append(Route("/slow", slow))
    with serve_app(app) as url:
        yield url


async def test_the_real_app_answers_a_slow_request_with_the_503_page(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        with anyio.fail_after(20):
            page = await client.get("/slow")
            fragment = await client.get("/slow", headers={"HX-Request": "true"})
    assert page.status_code == 503
    assert page.headers["retry-after"] == "30"
    assert "<html" in page.text and "took too long" in page.text
    assert "answers so far are saved" in page.text
    assert fragment.status_code == 503
    assert fragment.headers["retry-after"] == "30"
    assert "<html" not in fragment.text
    assert 'class="error-message"' in fragment.text and "took too long" in fragment.text


async def test_the_real_app_refuses_oversized_bodies_with_413(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        await visitor.home()
        form = {"category": "finance", "csrf_token": visitor.token, "pad": "x" * MAX_BYTES}
        by_length = await visitor.http.post("/sessions", data=form)

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(8):
                yield b"pad=" + b"x" * 252

        headers = {"content-type": "application/x-www-form-urlencoded"}
        by_stream = await visitor.http.post("/sessions", content=chunked(), headers=headers)
        home = await visitor.home()
    for response in (by_length, by_stream):
        assert response.status_code == 413
        assert "too much text" in response.text
    assert "content-length" not in by_stream.request.headers
    assert "Your journeys" not in home.text  # nothing was created


def csp_directives(value: str) -> dict[str, list[str]]:
    directives = {}
    for part in value.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


async def test_every_response_carries_the_security_headers(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start("ethics")
        http = visitor.http
        responses = {
            "home": await http.get("/"),
            "session": await http.get(f"/s/{sid}"),
            "healthz": await http.get("/healthz"),
            "readyz": await http.get("/readyz"),
            "metrics": await http.get("/metrics"),
            "static": await http.get("/static/js/app.js"),
            "not found": await http.get("/nowhere"),
            "unknown session": await http.get("/s/unknown"),
            "too large": await http.post("/sessions", content=b"x" * (MAX_BYTES + 1)),
            "too slow": await http.get("/slow"),
        }
        async with http.stream("GET", f"/s/{sid}/steps/0/stream") as stream:
            responses["stream"] = stream
    for what, response in responses.items():
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", what
        assert headers["referrer-policy"] == "same-origin", what
        assert headers["x-frame-options"] == "DENY", what
        csp = csp_directives(headers["content-security-policy"])
        assert csp["script-src"] == ["'self'"], what
        assert csp["frame-ancestors"] == ["'none'"], what
        assert csp["object-src"] == ["'none'"], what
        assert not any("unsafe" in source for source in csp["default-src"]), what
    assert responses["too large"].status_code == 413
    assert responses["too slow"].status_code == 503
    assert responses["stream"].status_code == 200
