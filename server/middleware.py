"""Pure ASGI middleware: security headers, request ids and logs, the request body limit."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable

import anyio
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import logs

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestContext:
    """Gives every request an id (echoed in X-Request-Id) that every log line carries."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(6)
        token = logs.request_id.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            logs.request_id.reset(token)


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """Refuses a body over `max_bytes`, by its Content-Length or as soon as it streams past it."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, reject: ASGIApp) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.reject = reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await self.reject(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:
            await self.reject(scope, receive, send)


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestGuard:
    """Bounds every non-streaming request by a time limit (a 503 page when it runs out) and
    logs any request that ran long or grew the process's memory. A live stream lasts as long
    as its step by design, so only its memory growth counts: a 40 s report is not a risk."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        time_limit_s: float,
        high_risk_s: float,
        high_risk_rss_mb: float,
        is_stream: Callable[[str], bool],
        reject: ASGIApp,
        rss_mb: Callable[[], float],
        on_high_risk: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.time_limit_s = time_limit_s
        self.high_risk_s = high_risk_s
        self.high_risk_rss_mb = high_risk_rss_mb
        self.is_stream = is_stream
        self.reject = reject
        self.rss_mb = rss_mb
        self.on_high_risk = on_high_risk

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        rss_before = self.rss_mb()
        response_started = False
        stream = self.is_stream(scope["path"])

        async def watched_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            if stream:
                await self.app(scope, receive, watched_send)
                return
            with anyio.move_on_after(self.time_limit_s) as limit:
                await self.app(scope, receive, watched_send)
            if limit.cancelled_caught:
                logs.event(
                    logging.ERROR,
                    "Request terminated to prevent worker timeout",
                    reason="request_time_limit",
                    path=scope["path"],
                    method=scope["method"],
                    limit_s=self.time_limit_s,
                )
                if not response_started:
                    await self.reject(scope, receive, send)
        finally:
            self._check(scope, started, rss_before, timed=not stream)

    def _check(self, scope: Scope, started: float, rss_before: float, *, timed: bool) -> None:
        duration = time.monotonic() - started
        grown = self.rss_mb() - rss_before
        if (timed and duration > self.high_risk_s) or grown > self.high_risk_rss_mb:
            self.on_high_risk()
            logs.event(
                logging.WARNING,
                "High-risk request completed",
                path=scope["path"],
                method=scope["method"],
                duration_s=round(duration, 3),
                rss_delta_mb=round(grown, 1),
                rss_mb=round(self.rss_mb(), 1),
            )
