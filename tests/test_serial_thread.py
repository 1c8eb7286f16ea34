"""The store's and the cache's thread: calls in order, off the loop, results and errors back."""

from __future__ import annotations

import threading

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest

from server.serial_thread import BATCH, SerialThread, ThreadClosed

pytestmark = pytest.mark.anyio


async def test_calls_run_in_order_on_one_thread_off_the_loop() -> None:
    thread = SerialThread("test")
    seen: list[tuple[int, int]] = []
    results: dict[int, int] = {}

    async def call(i: int) -> None:
        results[i] = await thread.run(lambda: seen.append((i, threading.get_ident())) or i * i)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            # More calls at once than one hand-back carries: every one still settles.
            for i in range(5 * BATCH):
                tg.start_soon(call, i)
    await thread.close()
    assert results == {i: i * i for i in range(5 * BATCH)}
    assert [i for i, _ in seen] == sorted(i for i, _ in seen)  # in the order handed over
    threads = {ident for _, ident in seen}
    assert len(threads) == 1 and threading.get_ident() not in threads


async def test_an_error_in_a_call_reaches_its_caller_and_the_thread_goes_on() -> None:
    thread = SerialThread("test")

    def fail() -> int:
        raise ValueError("no such row")

    with anyio.fail_after(10):
        with pytest.raises(ValueError, match="no such row"):
            await thread.run(fail)
        assert await thread.run(lambda: 7) == 7
    await thread.close()


async def test_a_cancelled_caller_waits_for_its_call_to_end() -> None:
    """Like to_thread.run_sync: a transaction is never left running with nobody to hear how
    it ended."""
    thread = SerialThread("test")
    started, release = threading.Event(), threading.Event()
    ended: list[str] = []

    def slow() -> str:
        started.set()
        release.wait(10)
        ended.append("call")
        return "done"

    async def caller(scope: anyio.CancelScope) -> None:
        with scope:
            await thread.run(slow)
        ended.append("caller")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            scope = anyio.CancelScope()
            tg.start_soon(caller, scope)
            await anyio.to_thread.run_sync(started.wait)
            scope.cancel()
            for _ in range(20):  # the cancellation had its chances to end the caller early
                await anyio.lowlevel.checkpoint()
            assert ended == []
            release.set()
    assert ended == ["call", "caller"]
    await thread.close()


async def test_close_runs_its_last_call_after_the_others_then_refuses_more() -> None:
    thread = SerialThread("test")
    order: list[str] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(thread.run, lambda: order.append("call"))
            await anyio.lowlevel.checkpoint()
            tg.start_soon(thread.close, lambda: order.append("last"))
        with pytest.raises(ThreadClosed):
            await thread.run(lambda: None)
    assert order == ["call", "last"]
