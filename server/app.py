"""create_app(settings, *, model=None): wiring and lifespan, nothing else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx2
from sse_starlette.sse import AppStatus
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from server import controls, logs, routes
from server.admission import ModelAdmission
from server.backends import open_backends
from server.broker import Broker
from server.browser import BrowserCookie
from server.errors import Problem, as_problem
from server.generators.bank import load_bank
from server.generators.offline import OfflineWriter
from server.guards import RETRY_AFTER_S
from server.identity import Identity
from server.journeys import UNTOUCHED_S, Journeys, LoadShedder, NotOpen
from server.llm import OpenAIModel, build_client
from server.metrics import LEVEL_VALUE, Metrics
from server.middleware import BodyLimit, RequestContext, RequestGuard, SecurityHeaders
from server.model import Deadlines, Model, OfflineModel
from server.pages import is_stream_path, problem_response
from server.services import Services
from server.settings import Settings, secret_key
from server.steps import StepWriter
from server.store import Conflict, Store, Unavailable, open_store
from server.views import Views
from server.watchdog import Thresholds, Watchdog, process_rss_mb

SHUTDOWN_POLL_S = 0.25
EXPIRY_INTERVAL_S = 3600.0


def create_app(
    settings: Settings,
    *,
    model: Model | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    rss_probe: Callable[[], float] | None = None,
    metrics_dir: Path | None = None,
) -> Starlette:
    """The app. `model` replaces the configured model, `transport` carries its HTTP, and
    `rss_probe` (a callable returning MB) replaces the watchdog's memory reading (tests).
    `metrics_dir`: the directory this machine's workers share their metrics in (run.py)."""
    probe = rss_probe or process_rss_mb
    metrics = Metrics(metrics_dir)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        limits = settings.limits
        store = await open_store(settings)
        try:
            backends = await open_backends(settings, metrics)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await store.close()
            raise
        cache = backends.cache
        bank_writer = OfflineWriter(load_bank())
        offline = OfflineModel(bank_writer, chars_per_s=settings.offline.chars_per_s)
        client = (
            build_client(settings, transport)
            if model is None and settings.uses_live_model
            else None
        )
        chosen: Model = model or offline
        if client is not None:
            chosen = OpenAIModel(
                client,
                name=settings.llm.model,
                deadlines=Deadlines.from_settings(settings),
                max_tokens_param=settings.llm.max_tokens_param,
                temperature=settings.llm.temperature,
            )
        identity = Identity(secret_key(settings))
        try:
            async with anyio.create_task_group() as tg:
                admission = backends.admission(tg, settings)
                generations = backends.broker(
                    tg, store, settings, metrics.abandoned.inc, metrics.takeovers.inc
                )
                writer = StepWriter(
                    settings,
                    model=chosen,
                    offline=offline,
                    admission=admission,
                    cache=cache,
                    store=store,
                    metrics=metrics,
                )
                journeys = Journeys(settings, store=store, generations=generations, writer=writer)
                views = Views(settings, journeys, bank_writer, identity)

                def trim_memory() -> None:
                    cache.trim()
                    store.trim()

                shedder = LoadShedder(generations, admission, trim=trim_memory)
                watchdog = Watchdog(
                    Thresholds(
                        limits.worker_memory_limit_mb,
                        limits.memory_soft_pct,
                        limits.memory_hard_pct,
                    ),
                    shedder,
                    interval_s=limits.watchdog_interval_s,
                    probe=probe,
                )
                _gauges(metrics, generations, admission, watchdog)
                app.state.services = Services(
                    settings=settings,
                    store=store,
                    cache=cache,
                    identity=identity,
                    generations=generations,
                    admission=admission,
                    journeys=journeys,
                    views=views,
                    watchdog=watchdog,
                    metrics=metrics,
                    session_limit=backends.session_limit,
                    answer_limit=backends.answer_limit,
                    redis=backends.redis,
                )
                tg.start_soon(_expire_old_sessions, store, settings.storage.session_ttl_days)
                tg.start_soon(watchdog.run, name="memory watchdog")
                tg.start_soon(metrics.publish_forever, name="metrics publisher")
                tg.start_soon(_release_on_shutdown, generations, name="shutdown watcher")
                yield
                generations.release_viewers()
                tg.cancel_scope.cancel()
        finally:
            if client is not None:
                await client.close()
            with anyio.CancelScope(shield=True):
                await backends.close()
                await store.close()

    async def on_error(request: Request, exc: Exception) -> Response:
        """The one error path: whatever was raised becomes a Problem, rendered by status."""
        problem = as_problem(request, exc)
        if isinstance(exc, Unavailable):
            logs.event(logging.ERROR, "Database unavailable", path=request.url.path, error=str(exc))
        elif problem.status >= 500 and not isinstance(exc, Problem):
            logs.log.exception("Unhandled error", extra={"fields": {"path": request.url.path}})
        metrics.rejected.labels(str(problem.status)).inc()
        response = problem_response(request, problem)
        if isinstance(exc, HTTPException) and exc.headers:
            response.headers.update(exc.headers)
        return response

    def refusal(problem: Problem) -> ASGIApp:
        """A refusal made outside the routes (a body too large, a request too slow)."""

        async def respond(scope: Scope, receive: Receive, send: Send) -> None:
            response = await on_error(Request(scope, receive), problem)
            await response(scope, receive, send)

        return respond

    too_large = Problem(
        413,
        "That is too much text",
        f"A form may carry at most {settings.limits.max_body_bytes} bytes.",
    )
    too_slow = Problem(
        503,
        "Crossroads is busy",
        "That request took too long, so it was stopped.",
        retry_after=RETRY_AFTER_S,
    )
    return Starlette(
        routes=[*controls.routes(), *routes.routes()],
        middleware=[
            Middleware(RequestContext),
            Middleware(BrowserCookie, identity=_identity),
            Middleware(SecurityHeaders),
            Middleware(
                RequestGuard,
                time_limit_s=settings.limits.worker_time_limit_s,
                high_risk_s=settings.limits.high_risk_request_s,
                high_risk_rss_mb=settings.limits.high_risk_rss_mb,
                is_stream=is_stream_path,
                reject=refusal(too_slow),
                rss_mb=probe,
                on_high_risk=metrics.high_risk.inc,
            ),
            Middleware(
                BodyLimit, max_bytes=settings.limits.max_body_bytes, reject=refusal(too_large)
            ),
        ],
        exception_handlers={
            error: on_error
            for error in (Problem, NotOpen, Conflict, Unavailable, HTTPException, Exception)
        },
        lifespan=lifespan,
    )


def _identity(scope: Scope) -> Identity:
    identity: Identity = scope["app"].state.services.identity
    return identity


def _gauges(
    metrics: Metrics, generations: Broker, admission: ModelAdmission, watchdog: Watchdog
) -> None:
    metrics.gauge("crossroads_viewers", "Viewers of running generations.", generations.viewers)
    metrics.gauge(
        "crossroads_generations_running", "Running generations.", lambda: len(generations)
    )

    def read_at() -> float:
        # With distributed admission these figures are the deployment's, read from Redis.
        return admission.read_at

    metrics.refresh_on_scrape("admission", admission.refresh)

    metrics.gauge(
        "crossroads_queue_depth",
        "Generations waiting for a model slot.",
        lambda: admission.waiting,
        read_at=read_at,
    )
    metrics.gauge(
        "crossroads_slots_in_use", "Model slots in use.", lambda: admission.in_use, read_at=read_at
    )
    metrics.gauge(
        "crossroads_slots_total",
        "Model slots configured (limits.max_concurrent_ai_requests).",
        lambda: admission.limit.maximum,
    )
    metrics.gauge(
        "crossroads_model_concurrency_limit",
        "Model calls admitted at once, as learned from cut streams, 429s and first-token times.",
        lambda: admission.slots,
        read_at=read_at,
    )
    metrics.gauge(
        "crossroads_rss_bytes",
        "Resident memory at the last sample.",
        lambda: watchdog.rss_mb * 1024 * 1024,
    )
    metrics.gauge(
        "crossroads_watchdog_level",
        "Memory level: 0 ok, 1 soft, 2 hard.",
        lambda: LEVEL_VALUE[watchdog.level],
    )


async def _expire_old_sessions(store: Store, ttl_days: int) -> None:
    """At start-up, then hourly: sessions unused for `ttl_days` go, with their answers."""
    while True:
        try:
            removed = await store.expire(ttl_days, untouched_days=UNTOUCHED_S / 86400)
        except Exception:
            # In the app's task group: an error here must not stop the server; try next hour.
            logs.log.exception("Expiring old sessions failed")
        else:
            if removed:
                logs.event(logging.INFO, "Expired old sessions", removed=removed, ttl_days=ttl_days)
        await anyio.sleep(EXPIRY_INTERVAL_S)


async def _release_on_shutdown(generations: Broker) -> None:
    """On SIGTERM uvicorn waits for open streams; tell them to say goodbye and end, so the
    browsers reconnect to the restarted server instead of being cut off."""
    while not AppStatus.should_exit:  # noqa: ASYNC110 - a flag set by a signal handler, no event to wait on
        await anyio.sleep(SHUTDOWN_POLL_S)
    generations.release_viewers()
