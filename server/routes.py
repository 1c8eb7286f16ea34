"""Thin handlers: parse the request, call the journey, render a page or a fragment."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
from prometheus_client import CONTENT_TYPE_LATEST
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from server.errors import Problem
from server.identity import COOKIE_MAX_AGE_S, COOKIE_NAME
from server.journeys import NotOpen
from server.ratelimit import RateLimiter
from server.services import Services
from server.store import Conflict, Session, Step
from server.streaming import Event, finished_events, follow

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
RETRY_AFTER_S = 30
SHUTDOWN_GRACE_S = 1.0
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


async def home(request: Request) -> Response:
    svc = services(request)
    owned = await svc.store.sessions_of(browser(request))
    journeys = []
    for session, done, answered in owned:
        category = svc.settings.categories.get(session.category)
        if done >= session.report_step + 1:
            state = "report ready"
        elif answered:
            state = f"{answered} of {session.questions_total} answered"
        else:
            state = "just started"
        journeys.append(
            {
                "session": session,
                "title": category.title if category else session.category,
                "state": state,
                "iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(session.created_at)),
                "when": time.strftime("%d %b %Y, %H:%M UTC", time.gmtime(session.created_at)),
            }
        )
    return page(
        request,
        "home.html",
        categories=list(svc.settings.categories.items()),
        journeys=journeys,
        deleted=request.query_params.get("deleted") == "1",
    )


async def create_session(request: Request) -> Response:
    svc = services(request)
    data = await form(request, slot="#home-error")
    limit(request, svc.session_limit, "#home-error")
    category = data.get("category")
    if not isinstance(category, str) or category not in svc.settings.categories:
        raise Problem(
            400, "Unknown life area", "Please pick one of the areas listed.", slot="#home-error"
        )
    refuse_when_short_of_memory(svc, "#home-error")
    session = await svc.journeys.create(owner=browser(request), category=category)
    url = f"/s/{session.id}"
    if is_htmx(request):
        return finish(request, Response(status_code=200, headers={"HX-Redirect": url}))
    return finish(request, RedirectResponse(url, status_code=303))


async def session_page(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    for step in await svc.store.steps(session.id):
        if step.status != "done":
            # A page view keeps the step alive, and restarts one left behind by a restart.
            await svc.journeys.ensure(session, step.n)
    view = await svc.views.session_view(session)
    return page(request, "session.html", view=view)


async def stream(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    n = step_number(request)
    try:
        found = await svc.journeys.ensure(session, n)
    except NotOpen as error:
        code = 409 if error.exists else 404
        return finish(request, PlainTextResponse(str(error), status_code=code))
    if isinstance(found, Step):
        done_html = await svc.views.done_html(session, n)
        state = "done" if found.status == "done" else "stopped"
        events = finished_events(state, found.version, found.text, done_html)
        return sse(svc, _replay(events))
    frame_s = svc.settings.stream.frame_ms / 1000
    return sse(svc, follow(found, request.headers.get("last-event-id"), frame_s=frame_s))


def sse(svc: Services, events: AsyncGenerator[Event]) -> Response:
    return EventSourceResponse(
        _counted(svc, events),
        ping=svc.settings.stream.heartbeat_s,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        # Lets a live stream send its goodbye status when the server stops.
        shutdown_event=anyio.Event(),
        shutdown_grace_period=SHUTDOWN_GRACE_S,
    )


async def _counted(svc: Services, events: AsyncGenerator[Event]) -> AsyncIterator[ServerSentEvent]:
    svc.metrics.streams.inc()
    try:
        # Closed here, not by the garbage collector: a viewer must leave its generation as
        # soon as its connection does.
        async with aclosing(events):
            async for event in events:
                yield ServerSentEvent(data=event.data, event=event.event, id=event.id)
    finally:
        svc.metrics.streams.dec()


async def _replay(events: list[Event]) -> AsyncGenerator[Event]:
    for event in events:
        yield event


async def answer(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    n = step_number(request)
    slot = f"#error-{n}"
    if n > session.report_step:
        raise Problem(404, "Step not found", "This journey has no such step.", slot=slot)
    data = await form(request, slot=slot)
    limit(request, svc.answer_limit, slot)
    text = _answer_text(data.get("answer"), svc.settings.journey.answer_max_chars, slot)
    try:
        await svc.journeys.answer(session, n, text)
    except Conflict:
        raise Problem(
            409,
            "This question is not open",
            "It was already answered, or it has not been asked yet. Reload to see where you are.",
            slot=slot,
            back_url=f"/s/{session.id}",
        ) from None
    if is_htmx(request):
        fragment = await svc.views.step_fragment(
            session, n, svc.identity.csrf_token(browser(request))
        )
        return finish(request, HTMLResponse(fragment))
    return finish(request, RedirectResponse(f"/s/{session.id}", status_code=303))


def _answer_text(raw: object, max_chars: int, slot: str) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise Problem(
            400, "Your answer is empty", "Write a few words, or pick a quick reply.", slot=slot
        )
    if "\x00" in raw or "\ufffd" in raw:
        raise Problem(
            400,
            "Your answer could not be read",
            "It contains characters that are not text.",
            slot=slot,
        )
    text = raw.strip().replace("\r\n", "\n")
    if len(text) > max_chars:
        raise Problem(
            400,
            "Your answer is too long",
            f"Please keep it under {max_chars} characters (it has {len(text)}).",
            slot=slot,
        )
    return text


async def _finished_report(request: Request, session: Session, *, owner: bool) -> Any:
    svc = services(request)
    step = await svc.store.step(session.id, session.report_step)
    if step is None or step.status != "done":
        raise Problem(
            404,
            "The report is not ready",
            "The report is written after the last answer; come back when it is finished.",
            # Only the owner is pointed at the journey; a share link reveals nothing more.
            back_url=f"/s/{session.id}" if owner else None,
        )
    return await svc.views.session_view(session)


async def report(request: Request) -> Response:
    session = await owned_session(request)
    view = await _finished_report(request, session, owner=True)
    base_url = str(request.base_url).rstrip("/")
    return page(request, "report.html", view=view, shared=False, base_url=base_url)


async def report_markdown(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    view = await _finished_report(request, session, owner=True)
    step = next(step for step in await svc.store.steps(session.id) if step.n == session.report_step)
    body, scores = await svc.views.report_parts(session, step)
    document = svc.views.markdown_document(view, body, scores)
    filename = f"crossroads-{session.category}-{session.id[:8]}.md"
    return finish(
        request,
        Response(
            document,
            media_type="text/markdown; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        ),
    )


async def shared_report(request: Request) -> Response:
    svc = services(request)
    session = await svc.store.session_by_share(request.path_params["share_id"])
    if session is None:
        raise Problem(404, "Report not found", "This share link does not exist or was revoked.")
    view = await _finished_report(request, session, owner=False)
    return page(request, "report.html", view=view, shared=True)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """503 at the hard memory level or when the store is unreachable; 200 otherwise."""
    svc = services(request)
    try:
        store_ok = await svc.store.ping()
    except Exception:
        store_ok = False
    cache_ok = await svc.cache.ping()
    level = svc.watchdog.level
    ready = store_ok and level != "hard"
    body = {
        "status": "ok" if ready else "unavailable",
        "watchdog": level,
        "store": "ok" if store_ok else "unreachable",
        "cache": "ok" if cache_ok else "unreachable",
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    return Response(services(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


def routes() -> list[Route | Mount]:
    return [
        Route("/", home, methods=["GET"]),
        Route("/sessions", create_session, methods=["POST"]),
        Route("/s/{sid}", session_page, methods=["GET"]),
        Route("/s/{sid}/steps/{n}/stream", stream, methods=["GET"]),
        Route("/s/{sid}/steps/{n}/answer", answer, methods=["POST"]),
        Route("/s/{sid}/report", report, methods=["GET"]),
        Route("/s/{sid}/report.md", report_markdown, methods=["GET"]),
        Route("/r/{share_id}", shared_report, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]


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
