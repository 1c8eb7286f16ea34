"""/metrics: every family operators rely on, their figures after real steps, and no secrets."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from server.app import create_app
from server.logs import JsonFormatter
from server.metrics import Metrics
from server.settings import Settings, load
from tests.conftest import SettingsFactory, Upstream, fast_limits
from tests.fake_upstream import Script
from tests.servers import serve_app
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

RSS_MB = 123.0
API_KEY = "sk-test-secret-123"
SECRET_KEY = "crossroads-cookie-secret-456"

# Family name (as the parser reports it: counters without `_total`) -> type and labels.
FAMILIES: dict[str, tuple[str, set[str]]] = {
    "crossroads_active_streams": ("gauge", set()),
    "crossroads_viewers": ("gauge", set()),
    "crossroads_queue_depth": ("gauge", set()),
    "crossroads_slots_in_use": ("gauge", set()),
    "crossroads_generations": ("counter", {"source", "outcome"}),
    "crossroads_fallbacks": ("counter", {"reason", "tier"}),
    "crossroads_time_to_first_chunk_seconds": ("histogram", {"source"}),
    "crossroads_rss_bytes": ("gauge", set()),
    "crossroads_watchdog_level": ("gauge", set()),
    "crossroads_cache_lookups": ("counter", {"result"}),
    "crossroads_ratelimit_unavailable": ("counter", {"limit"}),
    "crossroads_model_concurrency_limit": ("gauge", set()),
    "crossroads_model_attempts": ("counter", {"outcome"}),
    "crossroads_takeovers": ("counter", set()),
}


def families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def value(family: Metric, suffix: str = "", **labels: str) -> float:
    """The one sample of `family` with exactly these labels."""
    name = family.name + suffix
    found = [s.value for s in family.samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, family.samples)
    return float(found[0])


async def test_metrics_expose_every_family_after_an_offline_step(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(journey={"questions_per_session": 2})
    with serve_app(create_app(settings, rss_probe=lambda: RSS_MB)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("finance")
            scenario = await visitor.stream(sid, 0)
            question = await visitor.stream(sid, 1)
            response = await visitor.http.get("/metrics")
    assert scenario.names()[-1] == question.names()[-1] == "done"
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = families(response.text)
    for name, (kind, labels) in FAMILIES.items():
        assert name in found, name
        assert found[name].type == kind, name
        for sample in found[name].samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)
    assert all(name.startswith("crossroads_") for name in found)

    # The scenario and the first question, both written by the offline model.
    generations = found["crossroads_generations"]
    assert value(generations, "_total", source="offline", outcome="complete") == 2
    first_chunk = found["crossroads_time_to_first_chunk_seconds"]
    assert value(first_chunk, "_count", source="offline") == 2
    # Nothing is waiting, writing or watching once both streams have ended.
    for name in ("active_streams", "viewers", "queue_depth", "slots_in_use"):
        assert value(found[f"crossroads_{name}"]) == 0, name
    assert value(found["crossroads_rss_bytes"]) == RSS_MB * 1024 * 1024
    assert value(found["crossroads_watchdog_level"]) == 0
    # Both cache results are there from the start, so a hit ratio is never missing.
    lookups = found["crossroads_cache_lookups"]
    assert value(lookups, "_total", result="hit") == 0
    assert value(lookups, "_total", result="miss") == 0


def live_settings(tmp_path: Any, upstream_url: str, environ: dict[str, str]) -> Settings:
    return load(
        environ=environ,
        overrides={
            "storage": {"data_dir": str(tmp_path / "data")},
            "limits": fast_limits(max_attempts=1),
            "stream": {"heartbeat_s": 1.0, "frame_ms": 20, "abandon_grace_s": 1.0},
            "offline": {"chars_per_s": 4000.0},
            "llm": {"base_url": upstream_url, "model": "fake-model"},
            "journey": {"questions_per_session": 2},
        },
    )


async def test_a_live_journey_counts_model_steps_fallbacks_and_cache_lookups(
    tmp_path: Any, upstream: Upstream
) -> None:
    fake, upstream_url = upstream
    fake.script(Script(status=500))  # the scenario: the model fails, the step falls back
    settings = live_settings(tmp_path, upstream_url, {})
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("ethics")
            scenario = await visitor.stream(sid, 0)
            question = await visitor.stream(sid, 1)
            found = families((await visitor.http.get("/metrics")).text)
    assert 'data-source="offline"' in scenario.events[-1].data
    assert 'data-source="model"' in question.events[-1].data
    fallbacks = found["crossroads_fallbacks"]
    assert value(fallbacks, "_total", reason="upstream_status", tier="offline") == 1
    generations = found["crossroads_generations"]
    assert value(generations, "_total", source="offline", outcome="fallback") == 1
    assert value(generations, "_total", source="model", outcome="complete") == 1
    attempts = found["crossroads_model_attempts"]
    assert value(attempts, "_total", outcome="upstream_status") == 1
    assert value(attempts, "_total", outcome="ok") == 1
    first_chunk = found["crossroads_time_to_first_chunk_seconds"]
    assert value(first_chunk, "_count", source="model") == 1
    lookups = found["crossroads_cache_lookups"]
    # Every live step looks in the cache before calling the model; nothing was there yet.
    assert value(lookups, "_total", result="miss") >= 2
    assert value(lookups, "_total", result="hit") == 0


async def test_no_secret_appears_in_probes_pages_or_logs(
    tmp_path: Any, upstream: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    fake, upstream_url = upstream
    caplog.set_level(logging.DEBUG)
    environ = {"OPENAI_API_KEY": API_KEY, "CROSSROADS_SECRET_KEY": SECRET_KEY}
    settings = live_settings(tmp_path, upstream_url, environ)
    assert settings.api_key == API_KEY and settings.secret_key == SECRET_KEY
    fake.script(Script(), Script(status=500))  # a model step, then a failure and its fallback
    bodies: list[str] = []
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            http = visitor.http
            sid = await visitor.start("career")
            for n in (0, 1):
                stream = await visitor.stream(sid, n)
                assert stream.names()[-1] == "done"
                bodies.extend(event.data for event in stream.events)
            responses = [
                await http.get("/"),
                await http.get(f"/s/{sid}"),
                await http.get("/healthz"),
                await http.get("/readyz"),
                await http.get("/metrics"),
                await http.get("/nowhere"),
                await http.post("/sessions", data={"category": "x", "csrf_token": "forged"}),
            ]
            cookies = [cookie.value or "" for cookie in http.cookies.jar]
    # The key really was in use: the upstream saw it, as a bearer token.
    assert fake.request_headers[0]["authorization"] == f"Bearer {API_KEY}"
    assert cookies
    for response in responses:
        bodies.append(response.text)
        bodies.append(json.dumps(dict(response.headers)))
    formatter = JsonFormatter()
    logged = [formatter.format(record) for record in caplog.records]
    assert logged  # the journey did log (a fallback at least)
    for text in [*bodies, *cookies, *logged]:
        assert API_KEY not in text
        assert SECRET_KEY not in text
    assert API_KEY not in repr(settings) and SECRET_KEY not in repr(settings)


async def test_the_same_app_starts_again_without_duplicate_gauges(
    make_settings: SettingsFactory,
) -> None:
    app = create_app(make_settings(), rss_probe=lambda: RSS_MB)
    for _ in range(2):
        with serve_app(app) as url:
            async with Visitor(url) as visitor:
                response = await visitor.http.get("/metrics")
        assert response.status_code == 200
        assert value(families(response.text)["crossroads_rss_bytes"]) == RSS_MB * 1024 * 1024


def test_a_gauge_registered_again_reads_its_new_source() -> None:
    metrics = Metrics()
    metrics.gauge("crossroads_viewers", "Viewers.", lambda: 1.0)
    metrics.gauge("crossroads_viewers", "Viewers.", lambda: 2.0)
    assert value(families(metrics.render().decode())["crossroads_viewers"]) == 2


@pytest.mark.anyio
async def test_a_scrape_reads_values_kept_elsewhere_anew_first() -> None:
    kept = {"in_use": 3.0}
    read = {"in_use": 3.0}  # what the worker last read of it

    async def refresh() -> None:
        read["in_use"] = kept["in_use"]

    metrics = Metrics()
    metrics.gauge("crossroads_slots_in_use", "Slots.", lambda: read["in_use"], read_at=lambda: 1)
    metrics.refresh_on_scrape("admission", refresh)
    kept["in_use"] = 0.0  # given back elsewhere while this worker looked at nothing
    scraped = families((await metrics.scrape()).decode())
    assert value(scraped["crossroads_slots_in_use"]) == 0
