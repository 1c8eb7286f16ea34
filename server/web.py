"""What every handler shares: who the browser is, its session, its forms, and how a page,
a fragment or an error goes back."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from server.errors import Problem
from server.identity import COOKIE_MAX_AGE_S, COOKIE_NAME
from server.ratelimit import RateLimiter
from server.services import Services
from server.store import Session

RETRY_AFTER_S = 30
NOT_FOUND = "There is no such journey here. It may have expired, or it belongs to another browser."


def is_stream_path(path: str) -> bool:
    """SSE streams are bounded by the generation deadlines, not the request time limit."""
    return path.endswith("/stream")


def error_slot(path: str) -> str:
    """The error slot beside the form that posts to `path`."""
    parts = path.strip("/").split("/")
    if len(parts) >= 4 and parts[0] == "s" and parts[2] == "steps" and parts[3].isdigit():
        return f"#error-{parts[3]}"
    if path == "/sessions":
        return "#home-error"
    return "#session-error"


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def browser(request: Request) -> str:
    """This browser's id from its signed cookie, or a new one (set on the response)."""
    existing: str | None = getattr(request.state, "browser", None)
    if existing:
        return existing
    identity = services(request).identity
    found = identity.browser_id(request.cookies.get(COOKIE_NAME))
    if found is None:
        found, cookie = identity.issue()
        request.state.new_cookie = cookie
    request.state.browser = found
    return found


def finish(request: Request, response: Response) -> Response:
    cookie: str | None = getattr(request.state, "new_cookie", None)
    if cookie:
        response.set_cookie(
            COOKIE_NAME,
            cookie,
            max_age=COOKIE_MAX_AGE_S,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
    response.headers.setdefault("cache-control", "no-store")
    return response


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    svc = services(request)
    context.setdefault("csrf_token", svc.identity.csrf_token(browser(request)))
    return finish(request, HTMLResponse(svc.views.render(template, **context), status_code=status))


async def owned_session(request: Request) -> Session:
    session = await services(request).store.session(request.path_params["sid"])
    if session is None or session.owner != browser(request):
        raise Problem(404, "Journey not found", NOT_FOUND)
    return session


def step_number(request: Request) -> int:
    raw = request.path_params["n"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4:
        raise Problem(404, "Step not found", "This journey has no such step.")
    return int(raw)


def limit(request: Request, limiter: RateLimiter, slot: str) -> None:
    """429 with a friendly message when this client is over its per-minute limit."""
    client = request.client.host if request.client else "unknown"
    wait = limiter.check(client)
    if wait is not None:
        raise Problem(
            429,
            "Slow down a little",
            f"That was a lot in one minute. Please try again in {int(wait)} seconds; nothing was lost.",
            slot=slot,
            retry_after=int(wait),
        )


def refuse_when_short_of_memory(svc: Services, slot: str) -> None:
    """At the hard memory level new journeys wait: the 503 page, with when to retry."""
    if svc.watchdog.level == "hard":
        raise Problem(
            503,
            "Crossroads is short of memory",
            "New journeys are paused for a moment while the server recovers.",
            slot=slot,
            retry_after=RETRY_AFTER_S,
        )


async def form(request: Request, slot: str | None = None) -> FormData:
    """The posted form, after the CSRF check."""
    try:
        data = await request.form()
    except (UnicodeDecodeError, ValueError, AssertionError):
        raise Problem(400, "That form could not be read", "Please try again.", slot=slot) from None
    token = data.get("csrf_token")
    if not services(request).identity.check_csrf(
        browser(request), token if isinstance(token, str) else None
    ):
        raise Problem(
            403,
            "This form has expired",
            "Reload the page and send it again; nothing was changed.",
            slot=slot,
        )
    return data


def problem_response(request: Request, problem: Problem) -> Response:
    """The error as a page, or for htmx as a fragment retargeted to the slot beside the form."""
    svc = services(request)
    headers: dict[str, str] = {}
    if problem.retry_after is not None:
        headers["Retry-After"] = str(problem.retry_after)
    context = {
        "title": problem.title,
        "message": problem.message,
        "retry_after": problem.retry_after,
        "back_url": problem.back_url,
    }
    if is_htmx(request):
        template = "_503.html" if problem.status == 503 else "_error.html"
        # Never swapped over the form: into its error slot, so a typed answer is kept.
        headers["HX-Retarget"] = problem.slot or error_slot(request.url.path)
        headers["HX-Reswap"] = "innerHTML"
        body = svc.views.render(template, **context)
        return finish(request, HTMLResponse(body, status_code=problem.status, headers=headers))
    template = "503.html" if problem.status == 503 else "error.html"
    response = page(request, template, status=problem.status, **context)
    response.headers.update(headers)
    return response
