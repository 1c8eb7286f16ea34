"""Admission: slots, the ordered queue with its positions, bounded waits, drain, no leaked slot."""

from __future__ import annotations

import contextlib
import itertools
import random

import anyio
import pytest
from anyio.abc import TaskStatus

from server.admission import Admission, NotAdmitted
from tests.admission_holder import Holder

# The unit tests here check the in-process Admission's exact counts and hand-offs, which are
# embedded mechanics (the distributed one's counts are the deployment's "as last seen"): they run
# on SQLite alone, and tests/test_admission_redis.py holds RedisAdmission to the same contract
# (one FIFO line, global positions, timeouts, no slot leaked). tests/test_admission_app.py runs
# the app on both backends; tests/test_admission_limit.py holds the learned limit.
pytestmark = pytest.mark.anyio

LONG_S = 30.0  # a queue wait that never runs out within a test


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
