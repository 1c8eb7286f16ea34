"""Who the browser is: its id from the signed cookie, issued on first use and set by middleware."""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.identity import COOKIE_MAX_AGE_S, COOKIE_NAME, Identity

_STATE_KEY = "browser"


class Browser:
    """This request's browser. Its id is read from the cookie, or issued when a handler first
    needs one; the middleware then sets the cookie on whatever response goes back."""

    def __init__(self, identity: Identity, cookie: str | None) -> None:
        self._identity = identity
        self._id = identity.browser_id(cookie)
        self.new_cookie: str | None = None
        self.used = False

    @property
    def id(self) -> str:
        self.used = True
        if self._id is None:
            self._id, self.new_cookie = self._identity.issue()
        return self._id

    @property
    def csrf_token(self) -> str:
        return self._identity.csrf_token(self.id)

    def check_csrf(self, token: str | None) -> bool:
        return self._identity.check_csrf(self.id, token)


def of(connection: HTTPConnection) -> Browser:
    found: Browser = connection.scope["state"][_STATE_KEY]
    return found


def browser(connection: HTTPConnection) -> str:
    """This browser's id (a new one if it had none)."""
    return of(connection).id


class BrowserCookie:
    """Pure ASGI: puts the request's Browser in its state; on the way out sets a newly issued
    cookie, and marks any response that depended on the browser as not to be cached."""

    def __init__(self, app: ASGIApp, *, identity: Callable[[Scope], Identity]) -> None:
        self.app = app
        self.identity = identity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookie = HTTPConnection(scope).cookies.get(COOKIE_NAME)
        current = Browser(self.identity(scope), cookie)
        scope.setdefault("state", {})[_STATE_KEY] = current

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and current.used:
                headers = MutableHeaders(scope=message)
                if current.new_cookie is not None:
                    headers.append("set-cookie", _set_cookie(current.new_cookie, scope))
                headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _set_cookie(value: str, scope: Scope) -> str:
    """The Set-Cookie header, built by Starlette's own cookie code."""
    carrier = Response()
    carrier.set_cookie(
        COOKIE_NAME,
        value,
        max_age=COOKIE_MAX_AGE_S,
        httponly=True,
        samesite="lax",
        secure=scope.get("scheme") == "https",
    )
    return carrier.headers["set-cookie"]
