"""Pages and fragments for this browser, the journey a request acts on, and errors shown."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from server import browser, htmx
from server.errors import Problem
from server.services import Services
from server.store import Session

NOT_FOUND = "There is no such journey here. It may have expired, or it belongs to another browser."


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    """A whole page; every form on it carries this browser's CSRF token."""
    context.setdefault("csrf_token", browser.of(request).csrf_token)
    body = services(request).views.render(template, **context)
    return HTMLResponse(body, status_code=status)


async def owned_session(request: Request) -> Session:
    session = await services(request).store.session(request.path_params["sid"])
    if session is None or session.owner != browser.browser(request):
        raise Problem(404, "Journey not found", NOT_FOUND)
    return session


def step_number(request: Request) -> int:
    raw = request.path_params["n"]
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4:
        raise Problem(404, "Step not found", "This journey has no such step.")
    return int(raw)


def go_to(request: Request, url: str) -> Response:
    """Where a form sends the browser afterwards: htmx follows HX-Redirect, others a 303."""
    if htmx.details(request).request:
        return htmx.client_redirect(url)
    return RedirectResponse(url, status_code=303)


async def step_or_page(request: Request, session: Session, n: int) -> Response:
    """After a form on step n: htmx gets the step's element (and the next one's), others the page."""
    if not htmx.details(request).request:
        return RedirectResponse(f"/s/{session.id}", status_code=303)
    svc = services(request)
    fragment = await svc.views.step_fragment(session, n, browser.of(request).csrf_token)
    return HTMLResponse(fragment)


def is_stream_path(path: str) -> bool:
    """SSE streams: bounded by the generation deadlines, not the request time limit, and
    refused in plain text (an EventSource client reads no page)."""
    return path.endswith("/stream")


def problem_response(request: Request, problem: Problem) -> Response:
    """The error as a page; for htmx a fragment in the error slot the form names, so a typed
    answer is never swapped away; for a stream, plain text."""
    headers: dict[str, str] = {}
    if problem.retry_after is not None:
        headers["Retry-After"] = str(problem.retry_after)
    if is_stream_path(request.url.path):
        return PlainTextResponse(problem.message, status_code=problem.status, headers=headers)
    context = {
        "title": problem.title,
        "message": problem.message,
        "retry_after": problem.retry_after,
        "back_url": problem.back_url,
    }
    details = htmx.details(request)
    if details.request:
        template = "_503.html" if problem.status == 503 else "_error.html"
        body = services(request).views.render(template, **context)
        fragment = HTMLResponse(body, status_code=problem.status, headers=headers)
        return htmx.retarget(fragment, details.error_slot)
    template = "503.html" if problem.status == 503 else "error.html"
    response = page(request, template, status=problem.status, **context)
    response.headers.update(headers)
    return response
