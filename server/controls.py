"""What a person can do around the journey: stop and retry a step, start over, delete,
share and revoke, and read the privacy page."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from server.journeys import Journeys
from server.store import Session
from server.web import (
    browser,
    finish,
    form,
    is_htmx,
    limit,
    owned_session,
    page,
    refuse_when_short_of_memory,
    services,
    step_number,
)


def _back(request: Request, url: str) -> Response:
    """Where a control sends the browser afterwards: htmx follows HX-Redirect, others a 303."""
    if is_htmx(request):
        return finish(request, Response(status_code=200, headers={"HX-Redirect": url}))
    return finish(request, RedirectResponse(url, status_code=303))


async def _on_step(
    request: Request, act: Callable[[Journeys, Session, int], Awaitable[object]]
) -> Response:
    """A button on one step: act on it, then answer with the step's element (htmx) or the page."""
    svc = services(request)
    session = await owned_session(request)
    n = step_number(request)
    await form(request, slot=f"#error-{n}")
    await act(svc.journeys, session, n)
    if not is_htmx(request):
        return _back(request, f"/s/{session.id}")
    html = await svc.views.step_fragment(session, n, svc.identity.csrf_token(browser(request)))
    return finish(request, HTMLResponse(html))


async def stop(request: Request) -> Response:
    return await _on_step(request, Journeys.stop)


async def retry(request: Request) -> Response:
    # Each retry is a model call: counted like an answer.
    limit(request, services(request).answer_limit, f"#error-{step_number(request)}")
    return await _on_step(request, Journeys.retry)


async def restart(request: Request) -> Response:
    """Start over in the same area, with a new scenario."""
    svc = services(request)
    session = await owned_session(request)
    await form(request, slot="#session-error")
    limit(request, svc.session_limit, "#session-error")
    refuse_when_short_of_memory(svc, "#session-error")
    fresh = await svc.journeys.create(owner=browser(request), category=session.category)
    return _back(request, f"/s/{fresh.id}")


async def confirm_delete(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    view = await svc.views.session_view(session)
    return page(request, "delete.html", view=view)


async def delete(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    await form(request, slot="#session-error")
    await svc.journeys.delete(session)
    return _back(request, "/?deleted=1")


async def new_share(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    await form(request)
    await svc.store.set_share(session.id, secrets.token_urlsafe(18))
    return _back(request, f"/s/{session.id}/report#share")


async def revoke_share(request: Request) -> Response:
    svc = services(request)
    session = await owned_session(request)
    await form(request)
    await svc.store.set_share(session.id, None)
    return _back(request, f"/s/{session.id}/report#share")


async def privacy(request: Request) -> Response:
    return page(request, "privacy.html")


def routes() -> list[Route]:
    return [
        Route("/privacy", privacy, methods=["GET"]),
        Route("/s/{sid}/steps/{n}/stop", stop, methods=["POST"]),
        Route("/s/{sid}/steps/{n}/retry", retry, methods=["POST"]),
        Route("/s/{sid}/restart", restart, methods=["POST"]),
        Route("/s/{sid}/delete", confirm_delete, methods=["GET"]),
        Route("/s/{sid}/delete", delete, methods=["POST"]),
        Route("/s/{sid}/share", new_share, methods=["POST"]),
        Route("/s/{sid}/share/revoke", revoke_share, methods=["POST"]),
    ]
