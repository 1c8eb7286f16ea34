"""Admission under the learned limit: lowered, raised, and the calls that step back between attempts."""

from __future__ import annotations

import anyio
import pytest

from server.admission import Admission, NotAdmitted
from server.capacity import AdaptiveLimit
from tests.admission_holder import Holder

pytestmark = pytest.mark.anyio

LONG_S = 30.0  # a queue wait that never runs out within a test


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
