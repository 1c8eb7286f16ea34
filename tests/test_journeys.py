"""Steps written by a live (fake) model over real HTTP: fallback, heartbeats, grace, restarts."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.admission import Admission
from server.app import create_app
from server.cache_disk import DiskCache
from server.generators.bank import load_bank
from server.generators.journey import Prompt
from server.generators.offline import OfflineWriter
from server.journeys import Journeys
from server.logs import JsonFormatter
from server.metrics import Metrics
from server.model import Delta, IncompleteStream, OfflineModel
from server.settings import Settings
from server.steps import StepWriter
from server.store_sqlite import SQLiteStore
from server.streaming import Generations
from server.viewing import follow
from server.watch import UNWATCHED, Watcher
from tests import stored
from tests.conftest import SettingsFactory, Upstream
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.servers import serve_app
from tests.visitor import Visitor

# Journeys through the store, the broker, admission and the cache: on both backends.
pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

HEARTBEAT_S = 0.5
SCENARIO = [f"w{i} " for i in range(150)]


@pytest.fixture
def fake(upstream: Upstream) -> Upstream:
    upstream.fake.default = Script(chunks=SCENARIO)
    return upstream


@pytest.fixture
def live(make_settings: SettingsFactory, fake: Upstream) -> Settings:
    return make_settings(
        llm={"base_url": fake[1], "model": "fake-model"},
        limits={
            "first_token_timeout_s": 1.0,
            "chunk_timeout_s": 1.0,
            "worker_time_limit_s": 4.0,
            "max_attempts": 1,
        },
        stream={"heartbeat_s": HEARTBEAT_S, "abandon_grace_s": 0.5},
        journey={"questions_per_session": 2},
    )


async def test_a_live_scenario_streams_from_the_model(live: Settings, fake: Upstream) -> None:
    with serve_app(create_app(live)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("finance")
            stream = await visitor.stream(sid, 0)
            page = await visitor.http.get(f"/s/{sid}")
    assert stream.names()[-1] == "done"
    assert stream.text() == "".join(SCENARIO)
    assert 'data-source="model"' in stream.events[-1].data
    assert "Written live by" in page.text and "fake-model" in page.text
    upstream = fake[0]
    assert upstream.requests[0]["model"] == "fake-model"


async def test_a_stalled_model_falls_back_with_a_note_and_a_log_line(
    live: Settings, fake: Upstream, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = fake[0]
    upstream.default = Script(first_delay_s=30)
    caplog.set_level(logging.WARNING, logger="crossroads")
    with serve_app(create_app(live)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("finance")
            with anyio.fail_after(30):  # the upstream would wait 30 s: the deadline ended it
                stream = await visitor.stream(sid, 0)
    assert stream.names()[-1] == "done"
    done = stream.events[-1].data
    assert 'data-source="offline"' in done
    assert "slow" in done and "prepared scenario" in done
    assert "using a prepared scenario" in [e.data for e in stream.of("status")]
    assert len(stream.text().split()) >= 120
    assert stream.comments, "no heartbeat while the model was silent"
    await upstream.wait_for(lambda f: f.open_streams == 0, timeout=5)
    records = [
        r
        for r in caplog.records
        if r.getMessage() == "Request terminated to prevent worker timeout"
    ]
    assert len(records) >= 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["session_id"] == sid and line["step"] == 0
    assert line["reason"] == "first_token_timeout"
    assert {"ts", "level", "event", "request_id", "elapsed_s"} <= set(line)


async def test_text_already_shown_is_replaced_under_a_new_version(
    live: Settings, fake: Upstream
) -> None:
    fake[0].default = Script(chunks=SCENARIO, stall_after=20)
    with serve_app(create_app(live)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("ethics")
            stream = await visitor.stream(sid, 0)
    snapshots = stream.of("snapshot")
    versions = {e.id.split(".")[0] for e in stream.events if e.id}
    assert len(versions) == 2  # the model's partial text, then the fallback's
    assert snapshots[-1].id is not None
    final = stream.text()
    assert not final.startswith("w0 w1")
    assert 'data-source="offline"' in stream.events[-1].data
    assert "prepared scenario" in stream.events[-1].data
    assert "prepared scenario" not in final  # the note is never inside the text


async def test_heartbeats_keep_a_waiting_stream_alive(make_settings: SettingsFactory) -> None:
    upstream = FakeUpstream(Script(first_delay_s=2.5))
    with serve(upstream) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url},
            limits={"first_token_timeout_s": 5.0, "worker_time_limit_s": 8.0},
            stream={"heartbeat_s": HEARTBEAT_S},
        )
        with serve_app(create_app(settings)) as url:
            async with Visitor(url) as visitor:
                sid = await visitor.start()
                stream = await visitor.stream(sid, 0)
    assert stream.names()[-1] == "done"
    # Heartbeats, not text, kept it going while the model was silent: several before the first
    # text arrived (a ping every 0.5 s over a 2.5 s wait; counted, not timed).
    first_text = next(e.at for e in stream.events if e.event in ("snapshot", "chunk") and e.data)
    assert len([at for at in stream.comments if at < first_text]) >= 2
    # Each heartbeat is also a named event: browsers never see comments, and the page tells
    # a silent dead connection from a waiting one by counting heartbeats.
    assert len(stream.heartbeats) == len(stream.comments)
    assert 'data-source="model"' in stream.events[-1].data


async def test_an_abandoned_generation_closes_the_upstream_and_runs_again_later(
    live: Settings, fake: Upstream
) -> None:
    upstream = fake[0]
    upstream.script(Script(chunks=SCENARIO, chunk_delay_s=0.2))
    with serve_app(create_app(live)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("career")
            # Nobody watches: after the grace period the generation is cancelled.
            await upstream.wait_for(
                lambda f: f.client_closed == 1 and f.open_streams == 0, timeout=10
            )
            stream = await visitor.stream(sid, 0)
    assert stream.names()[-1] == "done"
    scenario_requests = [
        r for r in upstream.requests if "decision scenario" in r["messages"][1]["content"]
    ]
    assert len(scenario_requests) == 2
    assert stream.text() == "".join(SCENARIO)
    assert stream.events[1].id is not None and stream.events[1].id.startswith("2.")


async def test_a_step_left_generating_by_a_dead_process_is_written_again(
    live: Settings, fake: Upstream
) -> None:
    with serve_app(create_app(live)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("health")
            await visitor.stream(sid, 0)
            cookies = visitor.http.cookies
    # As if the process had died mid-question: the step is still marked generating.
    dead = stored.interrupt(live, sid, 1)
    with serve_app(create_app(live)) as url:
        async with Visitor(url) as visitor:
            visitor.http.cookies = cookies
            page = await visitor.http.get(f"/s/{sid}")
            assert page.status_code == 200 and 'id="step-1"' in page.text
            stream = await visitor.stream(sid, 1)
    assert stream.names()[-1] == "done"
    first_id = next(e.id for e in stream.events if e.id)
    # Written again under a version above the dead process's (a fallback may add one more).
    assert int(first_id.split(".")[0]) > dead


async def test_queue_position_is_announced_while_waiting_for_a_slot(
    make_settings: SettingsFactory,
) -> None:
    upstream = FakeUpstream(Script(chunks=SCENARIO, chunk_delay_s=0.01))
    with serve(upstream) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url},
            limits={"max_concurrent_ai_requests": 1, "queue_timeout_s": 10.0},
        )
        with serve_app(create_app(settings)) as url:
            async with Visitor(url) as visitor:
                sids = [await visitor.start() for _ in range(3)]
                streams = []

                async def watch(sid: str) -> None:
                    streams.append(await visitor.stream(sid, 0))

                with anyio.fail_after(30):
                    async with anyio.create_task_group() as tg:
                        for sid in sids:
                            tg.start_soon(watch, sid)
    assert upstream.max_open_streams == 1
    statuses = [e.data for s in streams for e in s.of("status")]
    assert any(status.startswith("queued") for status in statuses)
    assert all(s.names()[-1] == "done" for s in streams)


async def test_a_session_whose_category_left_the_settings_still_finishes(
    make_settings: SettingsFactory,
) -> None:
    first = make_settings(journey={"questions_per_session": 1})
    with serve_app(create_app(first)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("family")
            await visitor.stream(sid, 0)
            await visitor.stream(sid, 1)
            assert (await visitor.answer(sid, 1, "I would ask everyone first.")).status_code == 303
            cookies = visitor.http.cookies
    categories = {cid: c for cid, c in first.categories.items() if cid != "family"}
    later = first.model_copy(update={"categories": categories})
    assert "family" not in later.categories
    stored.interrupt(first, sid, 2)
    with serve_app(create_app(later)) as url:
        async with Visitor(url) as visitor:
            visitor.http.cookies = cookies
            report = await visitor.stream(sid, 2)
    assert report.names()[-1] == "done"
    assert 'data-step-kind="report"' in report.events[-1].data


class DiskFullStore(SQLiteStore):
    """A store whose disk fills up just as a step is recorded."""

    async def finish_step(self, *args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")


@pytest.mark.embedded_only(
    "builds the embedded pieces by hand around an SQLite store whose disk fills"
)
async def test_a_step_that_cannot_be_recorded_stops_with_done_instead_of_looping(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings()
    store = DiskFullStore(tmp_path / "full.db")
    offline = OfflineModel(OfflineWriter(load_bank()), chars_per_s=None)
    writer = StepWriter(
        settings,
        model=offline,
        offline=offline,
        admission=Admission(2, queue_timeout_s=1.0),
        cache=DiskCache(tmp_path / "cache", size_mb=8),
        store=store,
        metrics=Metrics(),
    )

    async def render_done() -> str:
        # The web layer's part: the step's element as the store has it when the stream ends.
        step = await store.step(session.id, 0)
        return f'<section id="step-0" data-status="{step.status if step else "gone"}"></section>'

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            generations = Generations(tg, grace_s=60)
            journeys = Journeys(settings, store=store, generations=generations, writer=writer)
            session = await store.create_session(
                owner="o", category="finance", seed=3, questions_total=1
            )
            gen = journeys.start(session, 0)
            events = [event async for event in follow(gen, None, frame_s=0, done=render_done)]
    assert events[-1].event == "done"  # the browser is told, instead of reconnecting forever
    assert 'data-status="stopped"' in events[-1].data  # with "write it again" to offer
    step = await store.step(session.id, 0)
    assert step is not None and step.status == "stopped"
    await store.close()


class TakenOverStore(SQLiteStore):
    """A store on which another worker takes the step over (a new generation begins) just as
    this one replaces the text it had shown: this worker's writer was paused past its lease."""

    async def bump_version(self, session_id: str, n: int, version: int) -> int:
        self.taken = await self.begin_generation(session_id, n)
        return await super().bump_version(session_id, n, version)


class CutModel:
    """A live model whose stream is cut after some text: the step falls back over shown text."""

    name = "cut-model"
    live = True

    async def stream(
        self, prompt: Prompt, *, deadline: float, watcher: Watcher = UNWATCHED
    ) -> AsyncGenerator[Delta]:
        yield Delta("Half a scenario ")
        raise IncompleteStream("cut")


async def test_a_step_taken_over_meanwhile_is_left_to_its_new_writer_not_stopped(
    make_settings: SettingsFactory, tmp_path: Path
) -> None:
    settings = make_settings()
    store = TakenOverStore(tmp_path / "taken.db")
    offline = OfflineModel(OfflineWriter(load_bank()), chars_per_s=None)
    writer = StepWriter(
        settings,
        model=CutModel(),
        offline=offline,
        admission=Admission(2, queue_timeout_s=1.0),
        cache=DiskCache(tmp_path / "cache", size_mb=8),
        store=store,
        metrics=Metrics(),
    )

    async def render_done() -> str:
        return "<section></section>"

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            generations = Generations(tg, grace_s=60)
            journeys = Journeys(settings, store=store, generations=generations, writer=writer)
            session = await store.create_session(
                owner="o", category="finance", seed=3, questions_total=1
            )
            gen = journeys.start(session, 0)
            events = [event async for event in follow(gen, None, frame_s=0, done=render_done)]
    assert events[-1].event == "done"
    # The fenced replacement was refused: the step stays the new writer's, neither stopped
    # nor moved past its version.
    step = await store.step(session.id, 0)
    assert step is not None and (step.status, step.version) == ("generating", store.taken)
    await store.close()


QUESTION = "Your sister asks for the loan again. What do you tell her?"
QUICK_TAIL = "\n\nQuick replies:\n- Lend it\n- Say no\n- Offer help instead"


async def test_a_quick_reply_tail_never_appears_in_a_snapshot_or_chunk(
    live: Settings, fake: Upstream
) -> None:
    """The question streams a few characters at a time, so the heading is seen half-written
    ("Qu", "Quick rep"); no text event may carry any of the tail, live or on a later viewer's
    snapshot, and `done` still brings the whole question with its replies."""
    text = QUESTION + QUICK_TAIL
    pieces = [text[i : i + 3] for i in range(0, len(text), 3)]
    fake[0].script(Script(chunks=SCENARIO), Script(chunks=pieces, chunk_delay_s=0.01))
    with serve_app(create_app(live)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("finance")
            await visitor.stream(sid, 0)
            live_stream = await visitor.stream(sid, 1)
            again = await visitor.stream(sid, 1)  # finished: status, snapshot, done
    for stream in (live_stream, again):
        assert stream.names()[-1] == "done"
        shown = [e.data for e in stream.events if e.event in ("snapshot", "chunk")]
        assert not any(word in data for data in shown for word in ("Quick", "Lend", "Say no"))
        assert stream.text().rstrip() == QUESTION
    assert "Lend it" in live_stream.events[-1].data
    assert len(live_stream.of("chunk")) > 1  # it did stream
