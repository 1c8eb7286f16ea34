"""create_app(settings, *, model=None): wiring and lifespan, nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import httpx2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from server import logs, routes
from server.admission import Admission
from server.errors import Problem
from server.generators.offline import OfflineWriter, load_bank
from server.identity import Identity
from server.journeys import Journeys
from server.llm import Deadlines, Model, OfflineModel, OpenAIModel, build_client
from server.middleware import BodyLimit, RequestContext, SecurityHeaders
from server.services import Services
from server.settings import Settings, secret_key
from server.store import Session, Store
from server.streaming import Generations
from server.views import Views


def create_app(
    settings: Settings,
    *,
    model: Model | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> Starlette:
    """The app. `model` replaces the configured model; `transport` carries its HTTP (tests)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = Store(settings.storage.data_dir / "crossroads.db")
        writer = OfflineWriter(load_bank())
        offline = OfflineModel(writer, chars_per_s=settings.offline.chars_per_s)
        client = None
        chosen: Model
        if model is not None:
            chosen = model
        elif settings.uses_live_model:
            client = build_client(settings, transport)
            chosen = OpenAIModel(
                client,
                name=settings.llm.model,
                deadlines=Deadlines.from_settings(settings),
                max_tokens_param=settings.llm.max_tokens_param,
                temperature=settings.llm.temperature,
            )
        else:
            chosen = offline
        identity = Identity(secret_key(settings))
        admission = Admission(
            settings.limits.max_concurrent_ai_requests,
            queue_timeout_s=settings.limits.queue_timeout_s,
        )
        try:
            async with anyio.create_task_group() as tg:
                generations = Generations(tg, grace_s=settings.stream.abandon_grace_s)
                views: Views

                async def render_done(session: Session, n: int) -> str:
                    return await views.done_html(session, n)

                journeys = Journeys(
                    settings,
                    store=store,
                    generations=generations,
                    model=chosen,
                    offline=offline,
                    admission=admission,
                    render_done=render_done,
                )
                views = Views(settings, journeys, writer, identity)
                app.state.services = Services(
                    settings=settings,
                    store=store,
                    identity=identity,
                    generations=generations,
                    admission=admission,
                    journeys=journeys,
                    views=views,
                )
                await store.expire(settings.storage.session_ttl_days)
                yield
                generations.cancel_all()
        finally:
            if client is not None:
                await client.close()
            store.close()

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return routes.problem_response(request, exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        titles = {404: "Page not found", 405: "Method not allowed"}
        problem = Problem(
            exc.status_code, titles.get(exc.status_code, "Request refused"), _http_message(exc)
        )
        response = routes.problem_response(request, problem)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    async def on_crash(request: Request, exc: Exception) -> Response:
        logs.log.exception("Unhandled error", extra={"fields": {"path": request.url.path}})
        problem = Problem(
            500, "Something went wrong", "Your answers so far are saved. Please try again."
        )
        return routes.problem_response(request, problem)

    async def too_large(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        problem = Problem(
            413,
            "That is too much text",
            f"A form may carry at most {settings.limits.max_body_bytes} bytes.",
            slot=None,
        )
        await routes.problem_response(request, problem)(scope, receive, send)

    return Starlette(
        routes=routes.routes(),
        middleware=[
            Middleware(RequestContext),
            Middleware(SecurityHeaders),
            Middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes, reject=too_large),
        ],
        exception_handlers={Problem: on_problem, HTTPException: on_http_error, Exception: on_crash},
        lifespan=lifespan,
    )


def _http_message(exc: HTTPException) -> str:
    if exc.status_code == 404:
        return "There is nothing at this address."
    if exc.status_code == 405:
        return "This address does not accept that kind of request."
    return str(exc.detail)
