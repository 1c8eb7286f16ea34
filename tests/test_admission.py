"""Admission: slots, the ordered queue with its positions, bounded waits, drain, no leaked slot."""

from __future__ import annotations

import contextlib
import itertools
import random
import re

import anyio
import httpx
import pytest
from anyio.abc import TaskStatus

from server.admission import Admission, NotAdmitted
from server.app import create_app
from server.capacity import AdaptiveLimit
from tests.conftest import SettingsFactory, Upstream
from tests.fake_upstream import Script
from tests.scrape import scrape, value, when_idle
from tests.servers import serve_app
from tests.sse import Stream
from tests.visitor import Visitor

# The unit tests here check the in-process Admission's exact counts and hand-offs, which are
# embedded mechanics (the distributed one's counts are the deployment's "as last seen"): they run
# on SQLite alone, and tests/test_admission_redis.py holds RedisAdmission to the same contract
# (one FIFO line, global positions, timeouts, no slot leaked). The app-level tests below run on
# both backends.
pytestmark = pytest.mark.anyio

LONG_S = 30.0  # a queue wait that never runs out within a test


class Holder:
    """A task that takes a slot, records where it stood in the queue, and leaves when told."""

    def __init__(self, admission: Admission, name: str, log: list[str] | None = None) -> None:
        self.admission = admission
        self.name = name
        self.log = log if log is not None else []
        self.positions: list[int] = []
        self.queued = anyio.Event()
        self.entered = anyio.Event()
        self.leave = anyio.Event()
        self.ended = anyio.Event()
        self.refused: NotAdmitted | None = None
        self.scope = anyio.CancelScope()

    def _position(self, ahead: int) -> None:
        self.positions.append(ahead)
        self.queued.set()

    async def run(self) -> None:
        try:
            with self.scope:
                async with self.admission.slot(self._position):
                    self.log.append(self.name)
                    self.entered.set()
                    await self.leave.wait()
        except NotAdmitted as refused:
            self.refused = refused
        finally:
            self.ended.set()


async def test_slots_are_granted_up_to_the_limit() -> None:
    admission = Admission(2, queue_timeout_s=LONG_S)
    a, b, c = (Holder(admission, name) for name in "abc")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.run)
            tg.start_soon(b.run)
            await a.entered.wait()
            await b.entered.wait()
            assert (admission.in_use, admission.waiting) == (2, 0)
            assert a.positions == b.positions == []  # never queued

            tg.start_soon(c.run)
            await c.queued.wait()
            assert not c.entered.is_set()
            assert (admission.in_use, admission.waiting) == (2, 1)
            assert c.positions == [0]

            a.leave.set()
            await c.entered.wait()
            assert (admission.in_use, admission.waiting) == (2, 0)
            b.leave.set()
            c.leave.set()
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_waiters_are_granted_in_order_and_the_handoff_keeps_in_use() -> None:
    admission = Admission(1, queue_timeout_s=LONG_S)
    log: list[str] = []
    first = Holder(admission, "first", log)
    waiters = [Holder(admission, name, log) for name in ("w1", "w2", "w3")]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.run)
            await first.entered.wait()
            for waiter in waiters:
                tg.start_soon(waiter.run)
                await waiter.queued.wait()
            assert [w.positions for w in waiters] == [[0], [1], [2]]

            first.leave.set()
            await first.ended.wait()
            # The slot went straight to the head of the queue: never free in between.
            assert (admission.in_use, admission.waiting) == (1, 2)
            await waiters[0].entered.wait()
            assert [w.positions for w in waiters[1:]] == [[1, 0], [2, 1]]

            for current, nxt in itertools.pairwise(waiters):
                current.leave.set()
                await current.ended.wait()
                assert admission.in_use == 1
                await nxt.entered.wait()
            waiters[-1].leave.set()
    assert log == ["first", "w1", "w2", "w3"]
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_positions_move_up_when_someone_ahead_leaves() -> None:
    admission = Admission(1, queue_timeout_s=LONG_S)
    holder = Holder(admission, "holder")
    waiters = [Holder(admission, f"w{i}") for i in range(3)]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.run)
            await holder.entered.wait()
            for waiter in waiters:
                tg.start_soon(waiter.run)
                await waiter.queued.wait()

            waiters[1].scope.cancel()
            await waiters[1].ended.wait()
            assert admission.waiting == 2
            assert waiters[0].positions == [0]  # nobody ahead of it left
            assert waiters[2].positions == [2, 1]

            waiters[0].scope.cancel()
            await waiters[0].ended.wait()
            assert waiters[2].positions == [2, 1, 0]
            assert (admission.in_use, admission.waiting) == (1, 1)

            holder.leave.set()
            await waiters[2].entered.wait()
            waiters[2].leave.set()
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_a_waiter_past_the_queue_timeout_is_refused_and_leaves_the_queue() -> None:
    admission = Admission(1, queue_timeout_s=0.05)
    holder = Holder(admission, "holder")
    late = Holder(admission, "late")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.run)
            await holder.entered.wait()
            tg.start_soon(late.run)
            await late.ended.wait()
            assert late.refused is not None and late.refused.reason == "queue_timeout"
            assert not late.entered.is_set()
            assert (admission.in_use, admission.waiting) == (1, 0)
            holder.leave.set()
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_positions_move_up_when_someone_ahead_times_out() -> None:
    admission = Admission(1, queue_timeout_s=0.05)
    holder = Holder(admission, "holder")
    impatient = Holder(admission, "impatient")
    patient = Holder(admission, "patient")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.run)
            await holder.entered.wait()
            tg.start_soon(impatient.run)
            await impatient.queued.wait()
            admission.queue_timeout_s = LONG_S  # read when a waiter joins: this one stays
            tg.start_soon(patient.run)
            await patient.queued.wait()

            await impatient.ended.wait()
            assert impatient.refused is not None
            assert impatient.refused.reason == "queue_timeout"
            assert patient.positions == [1, 0]
            assert admission.waiting == 1

            holder.leave.set()
            await patient.entered.wait()
            patient.leave.set()
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_a_cancelled_waiter_leaves_the_queue_and_takes_no_slot() -> None:
    admission = Admission(1, queue_timeout_s=LONG_S)
    holder = Holder(admission, "holder")
    waiter = Holder(admission, "waiter")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.run)
            await holder.entered.wait()
            tg.start_soon(waiter.run)
            await waiter.queued.wait()
            waiter.scope.cancel()
            await waiter.ended.wait()
            assert (admission.in_use, admission.waiting) == (1, 0)
            holder.leave.set()
    assert not waiter.entered.is_set()
    assert (admission.in_use, admission.waiting) == (0, 0)


@pytest.mark.parametrize("cancel_first", [True, False], ids=["cancel-release", "release-cancel"])
async def test_a_waiter_cancelled_as_the_slot_is_handed_to_it_leaks_no_slot(
    cancel_first: bool,
) -> None:
    admission = Admission(1, queue_timeout_s=LONG_S)
    waiter = Holder(admission, "waiter")
    in_use_at_handover: list[int] = []

    async def hand_over_and_cancel() -> None:
        async with admission.slot():
            await waiter.queued.wait()
            if cancel_first:
                # The waiter's cancellation is on its way when the slot is handed to it.
                waiter.scope.cancel()
        # Leaving the slot does not yield: all of this happens before the waiter runs again.
        waiter.scope.cancel()
        in_use_at_handover.append(admission.in_use)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(hand_over_and_cancel)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter.run)
    assert in_use_at_handover == [1]  # handed to the waiter, which had not run yet
    if cancel_first:
        assert not waiter.entered.is_set()
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_a_body_that_raises_releases_its_slot() -> None:
    admission = Admission(1, queue_timeout_s=LONG_S)
    with pytest.raises(RuntimeError, match="model broke"):
        async with admission.slot():
            assert admission.in_use == 1
            raise RuntimeError("model broke")
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_a_body_that_raises_hands_its_slot_to_the_next_waiter() -> None:
    admission = Admission(1, queue_timeout_s=LONG_S)
    waiter = Holder(admission, "waiter")
    errors: list[Exception] = []

    async def failing() -> None:
        try:
            async with admission.slot():
                await waiter.queued.wait()
                raise RuntimeError("model broke")
        except RuntimeError as error:
            errors.append(error)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(failing)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(waiter.run)
            await waiter.entered.wait()
            assert admission.in_use == 1
            waiter.leave.set()
    assert len(errors) == 1
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_a_cancelled_body_releases_its_slot() -> None:
    admission = Admission(1, queue_timeout_s=LONG_S)
    holder = Holder(admission, "holder")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.run)
            await holder.entered.wait()
            holder.scope.cancel()
    assert holder.refused is None
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_drain_refuses_waiters_and_new_callers_until_resumed() -> None:
    admission = Admission(1, queue_timeout_s=LONG_S)
    holder = Holder(admission, "holder")
    waiters = [Holder(admission, f"w{i}") for i in range(2)]
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.run)
            await holder.entered.wait()
            for waiter in waiters:
                tg.start_soon(waiter.run)
                await waiter.queued.wait()

            admission.drain("memory_soft")
            assert admission.waiting == 0
            for waiter in waiters:
                await waiter.ended.wait()
                assert waiter.refused is not None and waiter.refused.reason == "memory_soft"
                assert not waiter.entered.is_set()

            with pytest.raises(NotAdmitted) as refused:
                async with admission.slot():
                    pytest.fail("admitted while drained")
            assert refused.value.reason == "memory_soft"

            # A call already running keeps its slot and gives it back as usual.
            assert admission.in_use == 1
            holder.leave.set()
            await holder.ended.wait()
            assert admission.in_use == 0

            admission.drain("memory_hard")  # a later reason replaces the earlier one
            with pytest.raises(NotAdmitted, match="memory_hard"):
                async with admission.slot():
                    pytest.fail("admitted while drained")

    admission.resume()
    async with admission.slot():
        assert admission.in_use == 1
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_many_acquires_with_random_cancellation_and_timeouts_leak_no_slot() -> None:
    slots = 3
    admission = Admission(slots, queue_timeout_s=0.02)
    rng = random.Random(4)
    running = 0
    most = 0
    outcomes = {"done": 0, "refused": 0, "cancelled": 0}
    # Timing decides only how the visitors interleave (a fuzz); that the limit is reached and
    # each way out is taken is made certain by events: every slot is held until a visitor has
    # been refused.
    refused = anyio.Event()

    async def holder(task_status: TaskStatus[None]) -> None:
        nonlocal running, most
        async with admission.slot():
            running += 1
            most = max(most, running)
            task_status.started()
            await refused.wait()
            running -= 1

    async def visitor(cancel_after: float | None, work_s: float, start_s: float) -> None:
        nonlocal running, most
        await anyio.sleep(start_s)
        with anyio.CancelScope() as scope:
            if cancel_after is not None:
                scope.deadline = anyio.current_time() + cancel_after
            try:
                async with admission.slot():
                    running += 1
                    most = max(most, running)
                    assert admission.in_use <= slots
                    try:
                        await anyio.sleep(work_s)
                    finally:
                        running -= 1
            except NotAdmitted:
                outcomes["refused"] += 1
                refused.set()
                return
            outcomes["done"] += 1
            return
        outcomes["cancelled"] += 1

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for _ in range(slots):
                await tg.start(holder)
            for _ in range(200):
                cancel_after = rng.choice([None, 0.0, rng.uniform(0, 0.03)])
                tg.start_soon(visitor, cancel_after, rng.uniform(0, 0.006), rng.uniform(0, 0.05))
    assert (admission.in_use, admission.waiting) == (0, 0)
    assert most == slots
    assert sum(outcomes.values()) == 200
    assert all(outcomes.values()), outcomes  # each path was taken


# The app under uvicorn: 2 slots, 10 sessions at once, a slow upstream over real HTTP.

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


async def test_a_crowd_leaving_together_renumbers_each_waiter_once() -> None:
    admission = Admission(1, queue_timeout_s=60)
    heard: dict[int, list[int]] = {index: [] for index in range(50)}
    async with anyio.create_task_group() as outer:
        holder_done = anyio.Event()

        async def holder() -> None:
            async with admission.slot():
                await holder_done.wait()

        outer.start_soon(holder)
        await anyio.wait_all_tasks_blocked()
        crowd = anyio.CancelScope()

        async def wait_in_line(index: int) -> None:
            with contextlib.suppress(NotAdmitted):
                async with admission.slot(heard[index].append):
                    pass

        async def the_crowd() -> None:
            with crowd:
                async with anyio.create_task_group() as inner:
                    for index in range(40):
                        inner.start_soon(wait_in_line, index)
                    await anyio.sleep_forever()

        outer.start_soon(the_crowd)
        await anyio.wait_all_tasks_blocked()
        for index in range(40, 50):
            outer.start_soon(wait_in_line, index)
        await anyio.wait_all_tasks_blocked()
        assert admission.waiting == 50
        crowd.cancel()  # the first forty leave in the same turn of the loop
        await anyio.wait_all_tasks_blocked()
        await anyio.lowlevel.checkpoint()  # the renumbering is a callback after the departures
        assert admission.waiting == 10
        for index in range(40, 50):
            assert heard[index] == [index, index - 40]  # its place on arrival, then once more
        holder_done.set()
    assert admission.in_use == 0 and admission.waiting == 0


# The learned limit.


async def test_a_lowered_limit_takes_no_slot_away_but_admits_no_one_until_below_it() -> None:
    admission = Admission(AdaptiveLimit(2), queue_timeout_s=LONG_S)
    a, b, c = (Holder(admission, name) for name in "abc")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.run)
            tg.start_soon(b.run)
            await a.entered.wait()
            await b.entered.wait()
            admission.observe("incomplete_stream", started=0.0, first_token_s=None)
            assert (admission.slots, admission.in_use) == (1, 2)
            tg.start_soon(c.run)
            await c.queued.wait()
            a.leave.set()
            await a.ended.wait()
            assert (admission.in_use, admission.waiting) == (1, 1)  # b alone is at the limit
            assert not c.entered.is_set()
            b.leave.set()
            await c.entered.wait()
            c.leave.set()
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_a_raised_limit_admits_waiters_at_once() -> None:
    admission = Admission(AdaptiveLimit(2), queue_timeout_s=LONG_S)
    admission.observe("rate_limited", started=0.0, first_token_s=None)  # down to 1
    a, b = Holder(admission, "a"), Holder(admission, "b")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.run)
            await a.entered.wait()
            tg.start_soon(b.run)
            await b.queued.wait()
            # a's call succeeded while b waited: one window at 1, the limit rises to 2.
            admission.observe("ok", started=0.0, first_token_s=0.5)
            assert admission.slots == 2
            await b.entered.wait()
            assert admission.in_use == 2
            a.leave.set()
            b.leave.set()
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_a_call_over_the_lowered_limit_steps_back_to_the_head_of_the_line() -> None:
    admission = Admission(AdaptiveLimit(2), queue_timeout_s=LONG_S)
    holder = Holder(admission, "holder")
    older = Holder(admission, "older")
    rechecked = anyio.Event()
    waited: list[bool] = []
    positions: list[int] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.run)
            await holder.entered.wait()

            async def retrying() -> None:
                async with admission.slot(positions.append) as slot:
                    admission.observe("incomplete_stream", started=0.0, first_token_s=None)
                    tg.start_soon(older.run)
                    await older.queued.wait()
                    # Before its next attempt: two calls hold slots, the limit is now one.
                    waited.append(await slot.recheck())
                    rechecked.set()

            tg.start_soon(retrying)
            await anyio.wait_all_tasks_blocked()
            assert positions == [0]  # ahead of the caller that was already waiting
            assert older.positions == [0, 1]
            assert (admission.in_use, admission.waiting) == (1, 2)
            holder.leave.set()
            await rechecked.wait()
            assert waited == [True]
            await older.entered.wait()
            older.leave.set()
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_a_call_within_the_limit_keeps_its_slot_between_attempts() -> None:
    admission = Admission(AdaptiveLimit(2), queue_timeout_s=LONG_S)
    async with admission.slot() as slot:
        assert not await slot.recheck()
        assert admission.in_use == 1
    assert admission.in_use == 0


async def test_a_call_that_times_out_stepping_back_holds_no_slot() -> None:
    admission = Admission(AdaptiveLimit(2), queue_timeout_s=0.05)
    holder = Holder(admission, "holder")
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.run)
            await holder.entered.wait()
            with pytest.raises(NotAdmitted, match="queue_timeout"):
                async with admission.slot() as slot:
                    admission.observe("rate_limited", started=0.0, first_token_s=None)
                    await slot.recheck()
            assert (admission.in_use, admission.waiting) == (1, 0)
            holder.leave.set()
    assert (admission.in_use, admission.waiting) == (0, 0)


async def test_waiters_hear_their_place_again_when_the_limit_changes() -> None:
    admission = Admission(AdaptiveLimit(2), queue_timeout_s=LONG_S)
    holders = [Holder(admission, name) for name in ("a", "b")]
    waiter = Holder(admission, "waiter")
    heard: list[int] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for holder in holders:
                tg.start_soon(holder.run)
                await holder.entered.wait()
            tg.start_soon(waiter.run)
            await waiter.queued.wait()
            admission.observe("rate_limited", started=0.0, first_token_s=None)
            heard.append(admission.slots)
            assert waiter.positions == [0, 0]  # its place, then the same place with the new pace
            for holder in holders:
                holder.leave.set()
            await waiter.entered.wait()
            waiter.leave.set()
    assert heard == [1]


async def test_calls_that_step_back_keep_their_order_ahead_of_newcomers() -> None:
    admission = Admission(AdaptiveLimit(3), queue_timeout_s=LONG_S)
    holder = Holder(admission, "holder")
    newcomer = Holder(admission, "newcomer")
    order: list[str] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.run)
            await holder.entered.wait()
            stepping_back = [anyio.Event(), anyio.Event()]

            async def retrying(name: str, index: int) -> None:
                async with admission.slot() as slot:
                    await stepping_back[index].wait()
                    await slot.recheck()
                    order.append(name)

            tg.start_soon(retrying, "first", 0)
            tg.start_soon(retrying, "second", 1)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(newcomer.run)
            await newcomer.queued.wait()
            admission.observe("incomplete_stream", started=0.0, first_token_s=None)
            assert admission.slots == 1
            stepping_back[0].set()
            await anyio.wait_all_tasks_blocked()
            stepping_back[1].set()
            await anyio.wait_all_tasks_blocked()
            await anyio.lowlevel.checkpoint()  # the renumbering is a callback
            assert admission.waiting == 3
            assert newcomer.positions[-1] == 2
            holder.leave.set()
            await newcomer.entered.wait()
            newcomer.leave.set()
    assert order == ["first", "second"]
    assert (admission.in_use, admission.waiting) == (0, 0)
