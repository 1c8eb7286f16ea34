"""What a person can do around the journey: stop and retry a step, start over, delete,
share and revoke, and read the privacy page."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from server import browser, htmx
from server.errors import Problem
from server.forms import answer_text, form
from server.guards import limit, refuse_when_short_of_memory
from server.journeys import Journeys
from server.pages import go_to, owned_session, page, services, step_number, step_or_page
from server.store import Session
from server.views import SessionView, StepView


async def _on_step(
    request: Request, act: Callable[[Journeys, Session, int], Awaitable[object]]
) -> Response:
    """A button on one step: act on it, then answer with the step's element (htmx) or the page."""
    svc = services(request)
    session = await owned_session(request)
    n = step_number(request)
    await form(request)
    await act(svc.journeys, session, n)
    return await step_or_page(request, session, n)


async def stop(request: Request) -> Response:
    return await _on_step(request, Journeys.stop)


async def take_prepared(request: Request) -> Response:
    """Stop waiting for the model and take the prepared text (the status line's button)."""
    return await _on_step(request, Journeys.take_prepared)


async def retry(request: Request) -> Response:
    # Each retry is a model call: counted like an answer.
    await limit(request, services(request).answer_limit)
    return await _on_step(request, Journeys.retry)


def _later(view: SessionView, n: int) -> str:
    """What comes after step n, in words: "questions 3 to 5 and your report"."""
    questions = [step.number for step in view.steps if step.kind == "question" and step.n > n]
    report = any(step.kind == "report" and step.n > n for step in view.steps)
    parts = []
    if len(questions) == 1:
        parts.append(f"question {questions[0]}")
    elif questions:
        parts.append(f"questions {questions[0]} to {questions[-1]}")
    if report:
        parts.append("your report")
    return " and ".join(parts)


async def _step_view(request: Request) -> tuple[SessionView, StepView]:
    session = await owned_session(request)
    n = step_number(request)
    view = await services(request).views.session_view(session)
    step = next((step for step in view.steps if step.n == n), None)
    if step is None:
        raise Problem(404, "Step not found", "This journey has no such step.")
    return view, step


async def confirm_change(request: Request) -> Response:
    view, step = await _step_view(request)
    if step.kind != "question" or step.answer is None:
        raise Problem(409, "Nothing to change", "This question has no answer yet.")
    return page(request, "change.html", view=view, step=step, later=_later(view, step.n))


async def change(request: Request) -> Response:
    """A new answer to an earlier question; what followed it is written again."""
    svc = services(request)
    session = await owned_session(request)
    n = step_number(request)
    data = await form(request)
    await limit(request, svc.answer_limit)
    text = answer_text(data.get("answer"), svc.settings.journey.answer_max_chars)
    await svc.journeys.change_answer(session, n, text)
    return go_to(request, f"/s/{session.id}#step-{n + 1}")


async def confirm_rewrite(request: Request) -> Response:
    view, step = await _step_view(request)
    what = {"scenario": "the situation", "report": "your report"}.get(
        step.kind, f"question {step.number}"
    )
    given = sum(1 for later in view.steps if later.answer is not None and later.n >= step.n)
    cleared = f"{given} answer{'s' * (given != 1)} from here on" if given else ""
    return page(
        request,
        "rewrite.html",
        view=view,
        step=step,
        what=what,
        later=_later(view, step.n),
        cleared=cleared,
    )


async def rewrite(request: Request) -> Response:
    """Write a finished or stopped step again, and what followed it."""
    svc = services(request)
    session = await owned_session(request)
    n = step_number(request)
    await form(request)
    # Each rewrite is a model call: counted like an answer.
    await limit(request, svc.answer_limit)
    await svc.journeys.rewrite(session, n)
    return go_to(request, f"/s/{session.id}#step-{n}")


async def restart(request: Request) -> Response:
    """Start over in the same area, with a new scenario."""
    svc = services(request)
    session = await owned_session(request)
    await form(request)
    await limit(request, svc.session_limit)
    refuse_when_short_of_memory(svc.watchdog)
    fresh = await svc.journeys.create(owner=browser.browser(request), category=session.category)
    return go_to(request, f"/s/{fresh.id}")


async def confirm_delete(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    view = await svc.views.session_view(session)
    return page(request, "delete.html", view=view)


async def delete(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    await form(request)
    await svc.journeys.delete(session)
    return go_to(request, "/?deleted=1")


async def new_share(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    await form(request)
    await svc.store.set_share(session.id, secrets.token_urlsafe(18))
    return go_to(request, f"/s/{session.id}/report#share")


async def revoke_share(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    await form(request)
    await svc.store.set_share(session.id, None)
    return go_to(request, f"/s/{session.id}/report#share")


async def feedback(request: Request) -> Response:
    """ "This doesn't fit me" on a finished report: stored once per journey, counted in /metrics."""
    svc = services(request)
    session = await owned_session(request)
    data = await form(request)
    report = await svc.store.step(session.id, session.report_step)
    if report is None or report.status != "done":
        raise Problem(
            409, "The report is not ready", "Say what you think of it once it is written."
        )
    if await svc.store.add_feedback(session.id):
        svc.metrics.report_feedback.inc()
    if not htmx.details(request).request:
        where = "/report" if data.get("back") == "report" else ""
        return go_to(request, f"/s/{session.id}{where}#feedback-{session.id}")
    view = {"session": session, "feedback": True}
    return HTMLResponse(svc.views.render("_feedback.html", view=view))


async def privacy(request: Request) -> Response:
    return page(request, "privacy.html")


def routes() -> list[Route]:
    return [
        Route("/privacy", privacy, methods=["GET"]),
        Route("/s/{sid}/steps/{n}/stop", stop, methods=["POST"]),
        Route("/s/{sid}/steps/{n}/retry", retry, methods=["POST"]),
        Route("/s/{sid}/steps/{n}/fallback", take_prepared, methods=["POST"]),
        Route("/s/{sid}/steps/{n}/change", confirm_change, methods=["GET"]),
        Route("/s/{sid}/steps/{n}/change", change, methods=["POST"]),
        Route("/s/{sid}/steps/{n}/rewrite", confirm_rewrite, methods=["GET"]),
        Route("/s/{sid}/steps/{n}/rewrite", rewrite, methods=["POST"]),
        Route("/s/{sid}/restart", restart, methods=["POST"]),
        Route("/s/{sid}/delete", confirm_delete, methods=["GET"]),
        Route("/s/{sid}/delete", delete, methods=["POST"]),
        Route("/s/{sid}/share", new_share, methods=["POST"]),
        Route("/s/{sid}/share/revoke", revoke_share, methods=["POST"]),
        Route("/s/{sid}/feedback", feedback, methods=["POST"]),
    ]
