"""The fault matrix: whatever the upstream does, every stream ends with content, never silent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio
import pytest
import redis

from server.admission_redis import QUEUE, SLOTS
from server.app import create_app
from server.settings import Settings
from tests import stored
from tests.conftest import SettingsFactory, Upstream
from tests.fake_upstream import Script
from tests.scrape import scrape, value, when_idle
from tests.servers import free_port, serve_app
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

HEARTBEAT_S = 0.5
FIRST_TOKEN_S = 1.0
CHUNK_S = 1.5
STEP_S = 3.0
WORDS = [f"word{i} " for i in range(40)]


# Generous: on a busy 2-core machine a step may take far longer than its deadline says, and
# that is not what these tests are about. What ends a stream is proven by the reason the step
# records; the bound only proves that it ends.
ENDS_WITHIN_S = STEP_S + 20


@dataclass(frozen=True)
class Fault:
    script: Script
    reasons: frozenset[str]  # what the step records as the cause (none: the model's text)
    source: str = "offline"  # where the text must come from in the end
    silent: bool = False  # the upstream goes quiet for longer than a heartbeat


def because(*reasons: str) -> frozenset[str]:
    return frozenset(reasons)


FAULTS: dict[str, Fault] = {
    # Three first-token deadlines of 1 s end within the step's 3 s: whichever fires last.
    "stall-before-first-token": Fault(
        Script(chunks=WORDS, first_delay_s=60),
        because("first_token_timeout", "step_timeout"),
        silent=True,
    ),
    "stall-after-chunks": Fault(
        Script(chunks=WORDS, stall_after=5), because("chunk_timeout"), silent=True
    ),
    "trickle": Fault(
        Script(chunks=WORDS, chunk_delay_s=CHUNK_S - 1, endless=True), because("step_timeout")
    ),
    "429-then-success": Fault(Script(status=429, retry_after="1"), because(), source="model"),
    "429-past-the-budget": Fault(Script(status=429, retry_after="120"), because("rate_limited")),
    "500-every-try": Fault(Script(status=500), because("upstream_status")),
    # A body cut mid-stream: how the client library reports it decides which of the two.
    "dropped-connection": Fault(
        Script(chunks=WORDS, drop_after=5), because("connection_error", "incomplete_stream")
    ),
    "malformed-chunk": Fault(Script(chunks=WORDS, malformed_at=3), because("malformed_chunk")),
    "endless-stream": Fault(
        Script(chunks=WORDS, endless=True, chunk_delay_s=0.01), because("step_timeout")
    ),
    "nothing-listening": Fault(Script(), because("connection_error")),
    "no-finish-reason": Fault(
        Script(chunks=WORDS, close_without_finish=True), because("incomplete_stream")
    ),
}


def fault_settings(make_settings: SettingsFactory, base_url: str, **limits: Any) -> Settings:
    return make_settings(
        llm={"base_url": base_url},
        limits={
            "first_token_timeout_s": FIRST_TOKEN_S,
            "chunk_timeout_s": CHUNK_S,
            "worker_time_limit_s": STEP_S,
            "max_attempts": 3,
            "max_concurrent_ai_requests": 200,
            **limits,
        },
        stream={"heartbeat_s": HEARTBEAT_S, "abandon_grace_s": 1.0},
        journey={"questions_per_session": 2},
    )


def scripted(fault: str, kind: str) -> Callable[[dict[str, Any]], Script]:
    """The fault on the step under test (first try only for 429-then-success); others succeed."""
    seen: list[int] = []

    def respond(request: dict[str, Any]) -> Script:
        prompt = request["messages"][1]["content"]
        is_target = ("decision scenario" in prompt) == (kind == "scenario")
        if not is_target:
            return Script(chunks=WORDS)
        seen.append(1)
        if fault == "429-then-success" and len(seen) > 1:
            return Script(chunks=WORDS)
        return FAULTS[fault].script

    return respond


# The upstream's faults are met in llm.py, deadlines.py and steps.py, the same code on both
# backends; what they end through (the fallback through the broker, the slot released, the step
# stored) runs on both in test_a_hundred_clients_and_ten_vanish, tests/test_journeys.py (stalled
# model, fallback) and tests/test_attempts.py. Kept on SQLite alone for the suite's time budget.
@pytest.mark.embedded_only("upstream faults: backend-independent code; see the comment above")
@pytest.mark.parametrize("kind", ["scenario", "question"])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_every_fault_ends_in_content(
    make_settings: SettingsFactory, upstream: Upstream, fault: str, kind: str
) -> None:
    fake, url = upstream
    if fault == "nothing-listening":
        url = f"http://127.0.0.1:{free_port()}/v1"
    fake.responder = scripted(fault, kind)
    settings = fault_settings(make_settings, url)
    step = 0 if kind == "scenario" else 1
    with serve_app(create_app(settings)) as base:
        async with Visitor(base) as visitor:
            sid = await visitor.start("finance")
            if step == 1:
                scenario = await visitor.stream(sid, 0)
                assert scenario.names()[-1] == "done"
            with anyio.fail_after(ENDS_WITHIN_S):
                stream = await visitor.stream(sid, step)
    assert stream.status == 200
    assert stream.names()[0] == "status"
    assert stream.names()[-1] == "done", stream.names()
    done = stream.events[-1].data
    assert f'id="step-{step}"' in done
    assert f'data-source="{FAULTS[fault].source}"' in done
    assert len(stream.text().split()) >= 5  # content, not an error
    # The step records what ended the model's attempt: the deadline or the fault itself.
    recorded = stored.step(settings, sid, step)
    assert recorded is not None
    if FAULTS[fault].reasons:
        assert recorded.reason in FAULTS[fault].reasons, recorded.reason
    else:
        assert recorded.reason is None, recorded.reason
    if FAULTS[fault].silent:
        assert stream.comments, "no heartbeat while the upstream was silent"
    # The app closed every upstream connection it gave up on.
    await fake.wait_for(lambda f: f.open_streams == 0, timeout=5)


@pytest.mark.both_backends  # a hundred viewers through the broker, admission and the store
async def test_a_hundred_clients_and_ten_vanish(
    make_settings: SettingsFactory, upstream: Upstream, backend: str
) -> None:
    fake, url = upstream
    # Longer than the grace period, so a vanished viewer's generation is abandoned, not finished.
    long_scenario = Script(chunks=[f"w{i} " for i in range(60)], chunk_delay_s=0.1)

    def respond(request: dict[str, Any]) -> Script:
        # Questions are refused at once (they fall back to the offline writer), so the only
        # model streams, and the only abandoned generations, are the scenarios'.
        prompt = request["messages"][1]["content"]
        return long_scenario if "decision scenario" in prompt else Script(status=400)

    fake.responder = respond
    # The fake serves all hundred at once: what this guards is viewers vanishing, not the
    # learned limit (which slow first tokens on a busy test machine would lower, and which
    # tests/test_capacity.py and bench/ measure against an upstream that really is limited).
    # Deadlines far off too: a crowd of streams on a busy machine is slow to its first token,
    # and a fallback here would say nothing about vanishing viewers.
    settings = fault_settings(
        make_settings,
        url,
        first_token_timeout_s=15.0,
        chunk_timeout_s=15.0,
        worker_time_limit_s=30.0,
        adaptive_concurrency=False,
    )
    settings = settings.model_copy(
        update={"stream": settings.stream.model_copy(update={"abandon_grace_s": 2.0})}
    )
    with serve_app(create_app(settings)) as base:
        async with Visitor(base, max_connections=400) as visitor:
            sids: list[str] = []
            results: dict[str, Any] = {}

            async def reader(sid: str, vanish: bool) -> None:
                # A vanishing client reads a little, then hangs up.
                results[sid] = await visitor.stream(sid, 0, stop_after=4 if vanish else None)

            with anyio.fail_after(90):
                async with anyio.create_task_group() as tg:
                    for index in range(100):
                        sid = await visitor.start("career")
                        sids.append(sid)
                        tg.start_soon(reader, sid, index < 10)
            unfinished = {
                sid: results[sid].names()[-3:]
                for sid in sids[10:]
                if results[sid].names()[-1] != "done"
            }
            assert unfinished == {}
            assert all('data-source="model"' in results[sid].events[-1].data for sid in sids[10:])
            # Every vanished client's generation is cancelled after the grace period and its
            # upstream closed; nothing is left running or holding a slot.
            # (A slow machine may also abandon a generation whose reader connected late; that
            # reader then started it again, so only a lower bound holds for the counts.)
            await fake.wait_for(lambda f: f.client_closed >= 10 and f.open_streams == 0, timeout=30)
            await when_idle(visitor.http)
            metrics = await scrape(visitor.http)
            if backend == "postgres":
                # Distributed, these gauges are this worker's last reading of Redis, which can
                # stay stale once idle (a known gap, /work/notes/both.md, owner: global): what
                # holds a slot or a place in line is in Redis.
                # (A release may end a moment after its generation: polled, bounded.)
                with redis.Redis.from_url(settings.scale.redis_url) as shared, anyio.fail_after(10):
                    while (shared.zcard(SLOTS), shared.zcard(QUEUE)) != (0, 0):  # noqa: ASYNC110 - in Redis
                        await anyio.sleep(0.05)
            else:
                assert value(metrics, "crossroads_slots_in_use") == 0
                assert value(metrics, "crossroads_queue_depth") == 0
            assert value(metrics, "crossroads_abandoned_generations_total") >= 10
            assert value(metrics, "crossroads_active_streams") == 0
    # The vanished clients' scenarios were never finished: they wait to be written again.
    assert {stored.step_status(settings, sid, 0) for sid in sids[:10]} == {"open"}
    assert {stored.step_status(settings, sid, 0) for sid in sids[10:]} == {"done"}
