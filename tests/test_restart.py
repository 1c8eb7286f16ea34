"""Crash and restart: kill -9 mid-question, SIGTERM during live streams; nothing is lost."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import anyio
import pytest

from server.settings import load
from tests import sse, stored
from tests.conftest import Upstream
from tests.databases import Database
from tests.fake_upstream import Script
from tests.servers import clean_env, free_port, run_process
from tests.sse import Stream
from tests.visitor import Visitor

# A process killed or stopped keeps nothing but what the store (and Redis) hold: on both backends
# (`database` runs each test on both).
pytestmark = pytest.mark.anyio

SLOW = Script(chunks=[f"slow{i} " for i in range(200)], chunk_delay_s=0.05)
QUICK = Script(chunks=[f"quick{i} " for i in range(30)])
GRACEFUL_S = 5


@pytest.fixture
def upstream(upstream: Upstream) -> Upstream:
    upstream.fake.default = QUICK
    return upstream


def env_for(database: Database, upstream_url: str, **extra: str) -> dict[str, str]:
    return clean_env(
        **database.environ(),
        CROSSROADS_LLM__BASE_URL=upstream_url,
        CROSSROADS_JOURNEY__QUESTIONS_PER_SESSION="3",
        CROSSROADS_STREAM__HEARTBEAT_S="0.5",
        CROSSROADS_SERVER__GRACEFUL_SHUTDOWN_S=str(GRACEFUL_S),
        CROSSROADS_LIMITS__SESSIONS_PER_MINUTE_PER_CLIENT="0",
        CROSSROADS_LIMITS__ANSWERS_PER_MINUTE_PER_CLIENT="0",
        CROSSROADS_LIMITS__MAX_CONCURRENT_AI_REQUESTS="40",
        # Distributed: a killed process's step is taken over after its lease (the default 10 s
        # would only make the test wait); the embedded backend has no lease.
        CROSSROADS_SCALE__LEASE_S="3",
        **extra,
    )


def version_of(event_id: str | None) -> int:
    return int(str(event_id).split(".")[0])


def slow_questions(request: dict[str, Any]) -> Script:
    return SLOW if "follow-up question 2" in request["messages"][1]["content"] else QUICK


async def test_kill_minus_nine_mid_question_loses_no_answer(
    database: Database, upstream: Upstream
) -> None:
    fake, url = upstream
    fake.responder = slow_questions
    port = free_port()
    env = env_for(database, url)
    settings = load(environ=env)  # what the process reads
    base = f"http://127.0.0.1:{port}"
    async with Visitor(base) as visitor:
        with run_process(env, port) as proc:
            sid = await visitor.start("finance")
            await visitor.stream(sid, 0)
            await visitor.stream(sid, 1)
            assert (await visitor.answer(sid, 1, "First answer, kept safe.")).status_code == 303
            partial = await visitor.stream(sid, 2, stop_after=6)
            assert partial.names()[-1] == "chunk"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        # Slow only to be killed mid-stream: written again, the question need not take 10 s.
        fake.responder = None
        assert stored.intact(settings)
        assert stored.step_status(settings, sid, 2) == "generating"
        with run_process(env, port):
            page = await visitor.http.get(f"/s/{sid}")
            assert page.status_code == 200
            assert "First answer, kept safe." in page.text
            again = await visitor.stream(sid, 2)
            assert again.names()[-1] == "done"
            # Written again under a new version: the text that finished is a later version's.
            # (Distributed, the restarted process may first replay the dead one's version from
            # its Redis stream, until that process's lease runs out and the step is taken over.)
            assert version_of(again.of("snapshot")[-1].id) > version_of(
                partial.of("snapshot")[0].id
            )
            assert (
                await visitor.answer(sid, 2, "Second answer after the crash.")
            ).status_code == 303
            await visitor.stream(sid, 3)
            assert (await visitor.answer(sid, 3, "Third.")).status_code == 303
            report = await visitor.stream(sid, 4)
            assert report.names()[-1] == "done"
            final = await visitor.http.get(f"/s/{sid}/report")
            assert "First answer, kept safe." in final.text
    assert stored.intact(settings)


async def test_sigterm_during_live_streams_says_goodbye_then_they_resume(
    database: Database, upstream: Upstream, backend: str
) -> None:
    fake, url = upstream
    fake.default = SLOW
    port = free_port()
    env = env_for(database, url)
    base = f"http://127.0.0.1:{port}"
    async with Visitor(base) as visitor:
        with run_process(env, port) as proc:
            sids = [await visitor.start("ethics") for _ in range(20)]
            streams: dict[str, Stream] = {}

            async def watch(sid: str) -> None:
                stream = streams[sid] = Stream(status=0)
                async with visitor.http.stream("GET", f"/s/{sid}/steps/0/stream") as response:
                    stream.status = response.status_code
                    await sse.parse(response.aiter_lines(), stream)

            def showing_text() -> bool:
                return len(streams) == len(sids) and all(
                    any(e.id for e in stream.events) for stream in streams.values()
                )

            async with anyio.create_task_group() as tg:
                for sid in sids:
                    tg.start_soon(watch, sid)
                await fake.wait_for(lambda f: f.open_streams >= 20, timeout=20)
                with anyio.fail_after(30):  # every stream has shown some text
                    while not showing_text():  # noqa: ASYNC110 - filled by the readers above
                        await anyio.sleep(0.02)
                stopped_at = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                with anyio.fail_after(GRACEFUL_S + 10):
                    while proc.poll() is None:  # noqa: ASYNC110 - a process, not an event
                        await anyio.sleep(0.05)
            exit_s = time.monotonic() - stopped_at
        assert exit_s <= GRACEFUL_S + 3
        for sid in sids:
            last = streams[sid].events[-1]
            assert last.event == "status" and "restarting" in last.data, streams[sid].names()[-3:]
        # The browsers reconnect to the restarted server with their Last-Event-ID: the step
        # was being written, so it is written again under a new version and finishes.
        fake.default = QUICK
        with run_process(env, port):
            for sid in sids:
                last_id = next(e.id for e in reversed(streams[sid].events) if e.id)
                resumed = await visitor.stream(sid, 0, last_event_id=last_id)
                assert resumed.names()[-1] == "done"
                # Written again under a new version, which the browser gets as a snapshot
                # (distributed, after the rest of the old version from its Redis stream).
                assert any(version_of(e.id) > version_of(last_id) for e in resumed.of("snapshot"))
                if backend == "sqlite":
                    assert resumed.names()[1] == "snapshot"
