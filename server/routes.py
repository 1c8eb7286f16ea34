"""Thin handlers: parse the request, call the journey, render a page or a fragment."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from server import browser, logs
from server.errors import Problem
from server.events import Event
from server.forms import answer_text, form
from server.guards import limit, refuse_when_short_of_memory
from server.opening import StreamOpening, open_wait_s
from server.pages import go_to, owned_session, page, services, step_number, step_or_page
from server.store import Session, Step
from server.viewing import finished, follow

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


async def home(request: Request) -> Response:
    svc = services(request)
    now = time.time()
    journeys = []
    for item in await svc.store.sessions_of(browser.browser(request)):
        session = item.session
        category = svc.settings.categories.get(session.category)
        if item.done >= session.report_step + 1:
            state = "report ready"
        elif item.answered:
            state = f"{item.answered} of {session.questions_total} answered"
        else:
            state = "not answered yet"
        journeys.append(
            {
                "session": session,
                "title": category.title if category else session.category,
                "opening": opening_line(item.opening),
                "state": state,
                "iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(session.created_at)),
                "when": ago(now - session.created_at),
            }
        )
    return page(
        request,
        "home.html",
        categories=list(svc.settings.categories.items()),
        journeys=journeys,
        deleted=request.query_params.get("deleted") == "1",
    )


def opening_line(scenario: str, limit: int = 90) -> str:
    """The scenario's first sentence, as plain words: what tells two journeys apart."""
    words = " ".join(scenario.replace("*", "").replace("#", "").split())
    sentence = words.split(". ")[0].rstrip(".")
    if len(sentence) <= limit:
        return sentence
    return sentence[:limit].rsplit(" ", 1)[0] + "\u2026"


def ago(seconds: float) -> str:
    """How long ago, in words: right in every time zone, unlike a clock time."""
    minutes = int(seconds // 60)
    if minutes < 1:
        return "just now"
    if minutes < 60:
        return f"{minutes} minute{'s' * (minutes != 1)} ago"
    hours = minutes // 60
    if hours < 24:
        return f"{hours} hour{'s' * (hours != 1)} ago"
    days = hours // 24
    return "yesterday" if days == 1 else f"{days} days ago"


async def create_session(request: Request) -> Response:
    svc = services(request)
    data = await form(request)
    category = data.get("category")
    if not isinstance(category, str) or category not in svc.settings.categories:
        raise Problem(400, "Unknown life area", "Please pick one of the areas listed.")
    owner = browser.browser(request)
    # A card on home asks to reopen: the same area again brings back the journey not yet
    # answered. Without it (an API client, "start over") a new journey is always made.
    reopen = data.get("reopen") == "1"
    untouched = await svc.journeys.untouched(owner, category) if reopen else None
    if untouched is not None:
        # Looking at the same area again reopens the journey not yet answered: no pile of
        # empty journeys, and no rate limit for looking around.
        return go_to(request, f"/s/{untouched.id}")
    await limit(request, svc.session_limit)
    refuse_when_short_of_memory(svc.watchdog)
    session = await svc.journeys.create(owner=owner, category=category)
    return go_to(request, f"/s/{session.id}")


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
    n = step_number(request)
    last_event_id = request.headers.get("last-event-id")

    async def open_stream() -> AsyncGenerator[Event]:
        # The store's checks: whose journey, and whether step n is open (starting it if needed).
        session = await owned_session(request)
        found = await svc.journeys.ensure(session, n)

        async def done() -> str:
            # The step's element as the store has it now, for the stream's last event.
            return await svc.views.done_html(session, n)

        if isinstance(found, Step):
            state = "done" if found.status == "done" else "stopped"
            visible = svc.journeys.visible(session, n)
            return finished(state, found.version, found.text, done, visible=visible)
        frame_s = svc.settings.stream.frame_ms / 1000
        return follow(found, last_event_id, frame_s=frame_s, done=done)

    # Refusals keep their status codes when the store answers in time; when it does not, the
    # response starts anyway, so no stream request waits silent behind a busy store.
    return StreamOpening(svc, open_stream, wait_s=open_wait_s(svc.settings.stream.heartbeat_s))


async def answer(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    n = step_number(request)
    if n > session.report_step:
        raise Problem(404, "Step not found", "This journey has no such step.")
    data = await form(request)
    await limit(request, svc.answer_limit)
    text = answer_text(data.get("answer"), svc.settings.journey.answer_max_chars)
    await svc.journeys.answer(session, n, text)
    return await step_or_page(request, session, n)


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
    return Response(
        document,
        media_type="text/markdown; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


async def shared_report(request: Request) -> Response:
    svc = services(request)
    session = await svc.store.session_by_share(request.path_params["share_id"])
    if session is None:
        raise Problem(404, "Report not found", "This share link does not exist or was revoked.")
    view = await _finished_report(request, session, owner=False)
    response = page(request, "report.html", view=view, shared=True)
    # A shared report is for the people given its link, not for search engines.
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok")


async def readyz(request: Request) -> Response:
    """503 at the hard memory level or when the store is unreachable; 200 otherwise. Redis
    unreachable is reported but not unready: pages and stored journeys still work and model
    calls fall back, on every worker alike, so taking them all out of rotation would turn a
    degraded service into none."""
    svc = services(request)
    try:
        store_ok = await svc.store.ping()
    except Exception:
        store_ok = False
    cache_ok = await svc.cache.ping()
    redis_ok = await svc.redis.ping() if svc.redis is not None else None
    level = svc.watchdog.level
    ready = store_ok and level != "hard"
    body = {
        "status": ("ok" if redis_ok is not False else "degraded") if ready else "unavailable",
        "watchdog": level,
        "store": "ok" if store_ok else "unreachable",
        "cache": "ok" if cache_ok else "unreachable",
        "redis": "not used" if redis_ok is None else "ok" if redis_ok else "unreachable",
        # Which process answered, as its log lines name it (several workers share one port).
        "worker": logs.worker(),
    }
    return JSONResponse(body, status_code=200 if ready else 503)


async def metrics(request: Request) -> Response:
    return Response(await services(request).metrics.scrape(), media_type=CONTENT_TYPE_LATEST)


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
