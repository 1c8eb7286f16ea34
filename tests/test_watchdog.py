"""The memory watchdog: the pure decision, sampling and its log lines, and the app under pressure."""

from __future__ import annotations

import gc
import json
import logging
from typing import Any

import anyio
import httpx
import psutil
import pytest

from server.app import create_app
from server.logs import JsonFormatter
from server.watchdog import (
    RELEASE_EVERY,
    Level,
    Thresholds,
    Watchdog,
    decide,
    heap_trimmer,
    process_rss_mb,
)
from tests.conftest import SettingsFactory, Upstream
from tests.fake_upstream import Script
from tests.servers import serve_app
from tests.visitor import Visitor, htmx_form

pytestmark = pytest.mark.anyio

LIMITS = Thresholds(limit_mb=1000, soft_pct=75, hard_pct=90)
SCENARIO = [f"w{i} " for i in range(150)]


@pytest.mark.parametrize(
    ("rss_mb", "current", "expected"),
    [
        # Rising: each level from the table, no band on the way up.
        (0, "ok", "ok"),
        (700, "ok", "ok"),
        (749.9, "ok", "ok"),
        (750, "ok", "soft"),
        (899.9, "ok", "soft"),
        (900, "ok", "hard"),
        (1500, "ok", "hard"),
        (900, "soft", "hard"),
        # From hard: stays hard until below hard minus 5 points.
        (899.9, "hard", "hard"),
        (850, "hard", "hard"),
        (849.9, "hard", "soft"),
        (700, "hard", "soft"),
        (699.9, "hard", "ok"),
        # From soft: stays soft until below soft minus 5 points.
        (749.9, "soft", "soft"),
        (700, "soft", "soft"),
        (699.9, "soft", "ok"),
        (899.9, "soft", "soft"),
    ],
)
def test_decide(rss_mb: float, current: Level, expected: Level) -> None:
    assert decide(rss_mb, LIMITS, current) == expected


def test_decide_without_a_band_steps_down_at_the_thresholds() -> None:
    exact = Thresholds(limit_mb=1000, soft_pct=75, hard_pct=90, hysteresis_pct=0)
    assert decide(899.9, exact, "hard") == "soft"
    assert decide(749.9, exact, "soft") == "ok"


def test_a_reading_hovering_at_a_threshold_does_not_flap() -> None:
    level: Level = "ok"
    seen = []
    for rss_mb in [749, 751, 749, 751, 748, 740, 760, 701]:
        level = decide(rss_mb, LIMITS, level)
        seen.append(level)
    assert seen == ["ok"] + ["soft"] * 7


class MemoryProbe:
    """The RSS reading the test sets; counts how often the watchdog read it."""

    def __init__(self, mb: float) -> None:
        self.mb = mb
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        return self.mb


class RecordingShedder:
    def __init__(self) -> None:
        self.applied: list[tuple[Level, Level]] = []

    def apply(self, level: Level, previous: Level) -> None:
        self.applied.append((level, previous))

    def counts(self) -> dict[str, int]:
        return {"streams": 3, "generations": 2, "slots_in_use": 1, "queued": 0}


class CountingWatchdog(Watchdog):
    """Counts memory releases instead of collecting, so a test can see when they run."""

    releases = 0

    def release_memory(self) -> None:
        self.releases += 1


def level_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The watchdog's level-change log lines, as the JSON an operator reads."""
    formatter = JsonFormatter()
    lines = [json.loads(formatter.format(record)) for record in caplog.records]
    return [line for line in lines if "previous" in line and "limit_mb" in line]


def test_memory_is_released_again_while_the_level_stays_high() -> None:
    probe = MemoryProbe(800)
    dog = CountingWatchdog(LIMITS, RecordingShedder(), interval_s=1.0, probe=probe)
    for _ in range(RELEASE_EVERY + 1):
        dog.sample()
    assert dog.releases == 2  # on the rise to soft, then once after RELEASE_EVERY samples


def test_each_level_change_is_applied_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="crossroads")
    probe = MemoryProbe(100)
    shedder = RecordingShedder()
    dog = CountingWatchdog(LIMITS, shedder, interval_s=1.0, probe=probe)
    readings = [100, 800, 810, 950, 960, 870, 860, 700, 600, 100]
    levels = []
    for mb in readings:
        probe.mb = mb
        levels.append(dog.sample())
    assert levels == ["ok", "soft", "soft", "hard", "hard", "hard", "hard", "soft", "ok", "ok"]
    assert shedder.applied == [("soft", "ok"), ("hard", "soft"), ("soft", "hard"), ("ok", "soft")]
    assert dog.changes == 4
    # Memory is released on each change to a level above ok (a full collection stalls the
    # loop, so not on every sample), and again every RELEASE_EVERY samples while it stays high.
    assert dog.releases == 3
    lines = level_lines(caplog)
    assert [(line["previous"], line["memory_level"]) for line in lines] == [
        ("ok", "soft"),
        ("soft", "hard"),
        ("hard", "soft"),
        ("soft", "ok"),
    ]
    for line in lines[:3]:
        assert "Resource-intensive" in line["event"]
        assert line["memory_level"] in {"soft", "hard"}
    assert "Resource-intensive" not in lines[3]["event"]
    assert "recovered" in lines[3]["event"].lower()
    soft = lines[0]
    assert soft["rss_mb"] == 800 and soft["limit_mb"] == 1000 and soft["rss_pct"] == 80
    assert soft["streams"] == 3 and soft["slots_in_use"] == 1 and soft["queued"] == 0
    assert soft["memory_level"] == "soft" and soft["ts"].endswith("Z")
    levels_by_record = [r.levelno for r in caplog.records if "previous" in getattr(r, "fields", {})]
    assert levels_by_record == [logging.WARNING] * 3 + [logging.INFO]


def test_no_release_and_no_line_while_memory_is_ok(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="crossroads")
    shedder = RecordingShedder()
    dog = CountingWatchdog(LIMITS, shedder, interval_s=1.0, probe=MemoryProbe(740))
    for _ in range(5):
        assert dog.sample() == "ok"
    assert dog.releases == 0 and shedder.applied == [] and dog.changes == 0
    assert level_lines(caplog) == []
    assert dog.rss_mb == 740


def test_releasing_memory_collects_and_trims_the_heap() -> None:
    trims = []
    full_collections = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start" and info["generation"] == 2:
            full_collections.append(info)

    dog = Watchdog(
        LIMITS,
        RecordingShedder(),
        interval_s=1.0,
        probe=MemoryProbe(800),
        trim=lambda: trims.append(1),
    )
    gc.callbacks.append(on_gc)
    try:
        dog.sample()
    finally:
        gc.callbacks.remove(on_gc)
    assert full_collections and trims == [1]


def test_the_real_heap_trim_runs() -> None:
    # On glibc this calls malloc_trim(0); elsewhere it is a no-op. Either way it must not fail.
    heap_trimmer()()


def test_the_rss_reading_follows_the_process_as_its_memory_grows() -> None:
    # The process handle is kept between readings: each reading must still be a fresh one.
    before = process_rss_mb()
    block = bytearray(64 * 1024 * 1024)
    block[::4096] = b"x" * len(block[::4096])  # touch every page so it is resident
    grown = process_rss_mb()
    by_psutil = psutil.Process().memory_info().rss / (1024 * 1024)
    del block
    assert grown - before >= 48
    assert abs(grown - by_psutil) < 8  # the same figure psutil reads


async def test_run_samples_every_interval_until_cancelled() -> None:
    readings = iter([100, 800, 950, 600])
    finished = anyio.Event()
    shedder = RecordingShedder()

    def probe() -> float:
        value = next(readings, None)
        if value is None:
            finished.set()
            return 600.0
        return float(value)

    dog = CountingWatchdog(LIMITS, shedder, interval_s=0.001, probe=probe)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dog.run)
            await finished.wait()
            tg.cancel_scope.cancel()
    assert shedder.applied == [("soft", "ok"), ("hard", "soft"), ("ok", "hard")]


async def test_a_failing_reading_does_not_stop_the_watchdog(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="crossroads")
    calls = 0
    recovered = anyio.Event()

    def probe() -> float:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("no /proc for a moment")
        if calls >= 3:
            recovered.set()
        return 800.0

    shedder = RecordingShedder()
    dog = CountingWatchdog(LIMITS, shedder, interval_s=0.001, probe=probe)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dog.run)
            await recovered.wait()
            tg.cancel_scope.cancel()
    assert shedder.applied == [("soft", "ok")]
    failures = [r for r in caplog.records if r.getMessage() == "Memory watchdog sample failed"]
    assert len(failures) == 1 and failures[0].exc_info is not None


# The whole app under an injected probe, a live fake model over real HTTP.


@pytest.fixture
def upstream(upstream: Upstream) -> Upstream:
    upstream.fake.default = Script(chunks=SCENARIO)
    return upstream


async def wait_for_level(http: httpx.AsyncClient, level: Level) -> httpx.Response:
    """Poll /readyz until the watchdog reports `level`; a generous bound, not a speed check."""
    with anyio.fail_after(10):
        while True:
            response = await http.get("/readyz")
            if response.json()["watchdog"] == level:
                return response
            await anyio.sleep(0.02)


async def wait_for_samples(probe: MemoryProbe, count: int) -> None:
    target = probe.calls + count
    with anyio.fail_after(10):
        while probe.calls < target:  # noqa: ASYNC110 - the probe is read on the server's thread
            await anyio.sleep(0.01)


@pytest.mark.both_backends  # shedding drains admission and cancels the broker's generations
async def test_the_app_sheds_at_soft_cancels_at_hard_and_recovers(
    make_settings: SettingsFactory,
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, upstream_url = upstream
    # The first model call stalls after three chunks: still in flight when memory runs short.
    fake.script(Script(chunks=SCENARIO, stall_after=3))
    probe = MemoryProbe(100)
    settings = make_settings(
        llm={"base_url": upstream_url, "model": "fake-model"},
        limits={
            "worker_memory_limit_mb": 1000,
            "memory_soft_pct": 75,
            "memory_hard_pct": 90,
            "watchdog_interval_s": 0.05,
            "first_token_timeout_s": 30.0,
            "chunk_timeout_s": 30.0,
            "worker_time_limit_s": 60.0,
            "max_attempts": 1,
        },
        stream={"abandon_grace_s": 60.0},
    )
    caplog.set_level(logging.INFO, logger="crossroads")
    with serve_app(create_app(settings, rss_probe=probe)) as url:
        async with Visitor(url) as visitor:
            slow = await visitor.start("career")
            await fake.wait_for(lambda f: f.open_streams == 1)

            # Soft: no new model calls; new steps fall back; the call in flight goes on.
            probe.mb = 800
            ready = await wait_for_level(visitor.http, "soft")
            assert ready.status_code == 200
            sid = await visitor.start("ethics")
            scenario = await visitor.stream(sid, 0)
            question = await visitor.stream(sid, 1)
            done = scenario.events[-1].data
            assert scenario.names()[-1] == "done"
            assert 'data-source="offline"' in done or 'data-source="pool"' in done
            assert "short of memory" in done
            assert question.names()[-1] == "done"
            assert 'data-source="model"' not in question.events[-1].data
            assert len(fake.requests) == 1
            assert fake.open_streams == 1 and fake.client_closed == 0

            # Hard: the newest model call is cancelled and falls back; new sessions get a 503.
            probe.mb = 950
            ready = await wait_for_level(visitor.http, "hard")
            assert ready.status_code == 503
            assert ready.json()["status"] == "unavailable"
            await fake.wait_for(lambda f: f.client_closed == 1 and f.open_streams == 0)
            shed = await visitor.stream(slow, 0)
            assert shed.names()[-1] == "done"
            assert 'data-source="offline"' in shed.events[-1].data
            assert "short of memory" in shed.events[-1].data
            assert not shed.text().startswith("w0 w1 w2")

            form = {"category": "finance", "csrf_token": visitor.token}
            plain = await visitor.http.post("/sessions", data=form)
            assert plain.status_code == 503
            assert plain.headers["retry-after"] == "30"
            assert "<html" in plain.text and "answers so far are saved" in plain.text
            htmx = await visitor.http.post("/sessions", data=form, headers=htmx_form("#home-error"))
            assert htmx.status_code == 503
            assert htmx.headers["retry-after"] == "30"
            assert htmx.headers["hx-retarget"] == "#home-error"
            assert "<html" not in htmx.text and "answers so far are saved" in htmx.text

            # Below soft but inside the band: still soft, so admission stays paused.
            probe.mb = 740
            ready = await wait_for_level(visitor.http, "soft")
            assert ready.status_code == 200
            await wait_for_samples(probe, 3)
            assert (await visitor.http.get("/readyz")).json()["watchdog"] == "soft"

            # Below soft minus the band: recovery, and the model writes again.
            probe.mb = 650
            ready = await wait_for_level(visitor.http, "ok")
            assert ready.status_code == 200 and ready.json()["status"] == "ok"
            requests_before = len(fake.requests)
            sid = await visitor.start("finance")
            recovered = await visitor.stream(sid, 0)
            assert recovered.names()[-1] == "done"
            assert 'data-source="model"' in recovered.events[-1].data
            assert recovered.text() == "".join(SCENARIO)
            assert len(fake.requests) > requests_before
            metrics = (await visitor.http.get("/metrics")).text

    assert [(line["previous"], line["memory_level"]) for line in level_lines(caplog)] == [
        ("ok", "soft"),
        ("soft", "hard"),
        ("hard", "soft"),
        ("soft", "ok"),
    ]
    assert 'crossroads_fallbacks_total{reason="memory_soft",tier="offline"}' in metrics
    assert 'crossroads_fallbacks_total{reason="memory_hard",tier="offline"}' in metrics
    assert "crossroads_watchdog_level 0.0" in metrics
