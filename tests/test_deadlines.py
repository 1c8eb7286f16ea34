"""Deadlines over a run of reads: between two reads, and for the whole run."""

from __future__ import annotations

import time

import anyio
import pytest

from server.deadlines import ReadDeadline

pytestmark = pytest.mark.anyio


async def never() -> str:
    await anyio.sleep_forever()
    return "unreachable"


async def test_a_quick_read_returns_its_value() -> None:
    async def quick() -> str:
        await anyio.lowlevel.checkpoint()
        return "text"

    timer = ReadDeadline(0.5, time.monotonic() + 5, time.monotonic)
    try:
        assert [await timer.read(quick) for _ in range(50)] == ["text"] * 50
        assert timer.expired is None
    finally:
        timer.close()


async def test_a_read_longer_than_the_gap_expires_as_chunk() -> None:
    timer = ReadDeadline(0.2, time.monotonic() + 5, time.monotonic)
    with anyio.fail_after(3):  # the deadline fired
        assert await timer.read(never) is None
    assert timer.expired == "chunk"
    timer.close()


async def test_the_whole_run_deadline_wins_when_it_comes_first() -> None:
    timer = ReadDeadline(5.0, time.monotonic() + 0.2, time.monotonic)
    with anyio.fail_after(3):
        assert await timer.read(never) is None
    assert timer.expired == "step"
    timer.close()


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    timer = ReadDeadline(5.0, time.monotonic() + 5, time.monotonic)
    with anyio.move_on_after(0.1) as scope:
        await timer.read(never)
    assert scope.cancelled_caught
    assert timer.expired is None
    timer.close()
