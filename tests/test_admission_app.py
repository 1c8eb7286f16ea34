"""Admission in the app under uvicorn: two slots for ten sessions at once over a slow upstream
on real HTTP, the queue positions the page shows, fallbacks, and the metrics."""

from __future__ import annotations

import re

import anyio
import httpx
import pytest

from server.app import create_app
from tests.conftest import SettingsFactory, Upstream
from tests.fake_upstream import Script
from tests.scrape import scrape, value, when_idle
from tests.servers import serve_app
from tests.sse import Stream
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

SLOW_CHUNKS = [f"word{i} " for i in range(10)]
QUEUED = re.compile(r"^queued: \d+ ahead of you; the model is writing 2 answers at a time$")
SOURCE = re.compile(r'data-source="(\w+)"')


@pytest.fixture
def slow_upstream(upstream: Upstream) -> Upstream:
    # Each stream lasts about a second: ten of them cannot all get through two slots in time.
    upstream.fake.default = Script(chunks=SLOW_CHUNKS, chunk_delay_s=0.1)
    return upstream


@pytest.mark.both_backends  # the app's admission: in this process, or in Redis
async def test_two_slots_serve_ten_sessions_with_queue_positions_and_fallbacks(
    make_settings: SettingsFactory,
    slow_upstream: Upstream,
    backend: str,
    request: pytest.FixtureRequest,
) -> None:
    upstream, upstream_url = slow_upstream
    settings = make_settings(
        llm={"base_url": upstream_url, "model": "fake-model"},
        limits={
            "max_concurrent_ai_requests": 2,
            "queue_timeout_s": 1.5,
            "first_token_timeout_s": 3.0,
            "chunk_timeout_s": 3.0,
            "worker_time_limit_s": 10.0,
            "max_attempts": 1,
        },
        journey={"questions_per_session": 2},
        # No generation is abandoned here: the fake notices a client closing mid-stream a
        # moment after the slot is free again, and would count one stream too many.
        stream={"abandon_grace_s": 30.0},
    )
    streams: dict[str, Stream] = {}
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            await visitor.home()
            sids: list[str] = []

            async def start() -> None:
                sids.append(await visitor.start("finance"))

            async def watch(sid: str) -> None:
                streams[sid] = await visitor.stream(sid, 0)

            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    for _ in range(10):
                        tg.start_soon(start)
                async with anyio.create_task_group() as tg:
                    for sid in sids:
                        tg.start_soon(watch, sid)

                # Each finished scenario opened question 1, which also queues for the model:
                # wait until every generation has ended.
                await when_idle(visitor.http)
                await upstream.wait_for(lambda f: f.open_streams == 0)
                # No slot leaked and nobody is left in line. Distributed, a slot's release is a
                # round trip to Redis that may end a moment after its generation did.
                with anyio.fail_after(10):
                    while True:
                        metrics = await scrape(visitor.http)
                        if value(metrics, "crossroads_slots_in_use") == 0:
                            break
                        await anyio.sleep(0.05)
            assert value(metrics, "crossroads_queue_depth") == 0

    assert upstream.max_open_streams == 2
    assert len(streams) == 10
    for stream in streams.values():
        assert stream.status == 200
        assert stream.names()[-1] == "done", stream.names()
    statuses = [e.data for s in streams.values() for e in s.of("status")]
    assert any(QUEUED.match(status) for status in statuses), statuses

    sources: dict[str, str] = {}
    for sid, stream in streams.items():
        done = stream.events[-1].data
        match = SOURCE.search(done)
        assert match, done
        sources[sid] = match.group(1)
        if sources[sid] != "model":
            assert sources[sid] in {"offline", "pool"}, done
            assert "Many people are writing right now" in done
            assert "Many people are writing" not in stream.text()  # the note is never the text
    fell_back = [sid for sid, source in sources.items() if source != "model"]
    assert len(fell_back) >= 10 - 4, sources  # at most two rounds of two fit in the wait
    assert "model" in sources.values()
    scenario_requests = [
        r for r in upstream.requests if "decision scenario" in r["messages"][1]["content"]
    ]
    # A generation refused a slot never reached the upstream.
    assert len(scenario_requests) == 10 - len(fell_back)


@pytest.mark.both_backends  # the app's admission: in this process, or in Redis
async def test_metrics_show_free_slots_when_the_app_is_idle(make_settings: SettingsFactory) -> None:
    with serve_app(create_app(make_settings())) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            metrics = await scrape(client)
    assert value(metrics, "crossroads_slots_in_use") == 0
    assert value(metrics, "crossroads_queue_depth") == 0
    assert value(metrics, "crossroads_slots_total") == 4
