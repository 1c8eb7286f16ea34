"""The distributed broker's ticks, one of each per worker: the round trips to Redis and the reads
of the store that keep a worker's steps (leases, "seen" keys, mirrored headers, stops read from
the store) and that publish their frames do not grow with how many steps it writes or follows."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from server.broker_stream_redis import StepKeys
from server.broker_tick_redis import run_scripts
from server.shared_redis import SharedRedis
from server.store import Store
from server.viewing import follow
from tests.test_broker_redis import LEASE_S, Writer, _done, _session, _until, workers

pytestmark = pytest.mark.anyio
WINDOW_S = 3.0  # more than a lease: every lease is renewed within it


class Counted:
    """Counts a store's reads of single steps and of many."""

    def __init__(self, store: Store) -> None:
        self.single = 0
        self.batched = 0
        step, states = store.step, store.step_states

        async def count_step(*args: Any) -> Any:
            self.single += 1
            return await step(*args)

        async def count_states(*args: Any) -> Any:
            self.batched += 1
            return await states(*args)

        store.step = count_step  # type: ignore[method-assign]
        store.step_states = count_states  # type: ignore[method-assign]


async def test_a_workers_round_trips_do_not_grow_with_its_steps(
    redis_url: str, postgres_url: str
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b), anyio.create_task_group() as tg:
        writers: list[Writer] = []
        mirrors = []

        async def add(count: int) -> None:
            for _ in range(count):
                sid = await _session(a.store)
                writer = Writer(a.store, sid)
                gen = a.broker.start((sid, 0), writer)
                writer.give("text")
                await _until(lambda gen=gen: gen.text == "text")  # type: ignore[misc]
                mirror = b.broker.start((sid, 0), Writer(b.store, sid))
                tg.start_soon(_view, mirror)
                writers.append(writer)
                mirrors.append(mirror)
            await _until(lambda: all(m.text == "text" and m.viewers for m in mirrors))

        async def window() -> tuple[int, int]:
            calls = (a.redis.calls, b.redis.calls)
            await anyio.sleep(WINDOW_S)
            return a.redis.calls - calls[0], b.redis.calls - calls[1]

        await add(1)
        one = await window()
        await add(29)
        counted = Counted(a.store)
        thirty = await window()
        # Written on A (its leases renewed, its "seen" keys checked) and followed on B (the
        # headers read, the "seen" keys set for the viewers there): a step loop would make
        # 29 x 6 more round trips a window on each worker.
        assert thirty[0] <= one[0] + 4 and thirty[1] <= one[1] + 4, (one, thirty)
        # The steps' state read from the store at each renewal, all in one query.
        assert counted.single == 0
        assert 1 <= counted.batched <= WINDOW_S / (LEASE_S / 3) + 1
        # Every lease renewed all along: A still writes them all, nobody took one over.
        assert (len(a.broker), len(b.broker)) == (30, 0)
        assert all(not gen.ended for gen in mirrors)
        for writer in writers:
            assert await a.redis.client.pttl(StepKeys((writer.session_id, 0)).lease) > 0
            writer.give("<end>")
        with anyio.fail_after(10):
            await _until(lambda: all(gen.ended for gen in mirrors))


async def _view(gen: Any) -> None:
    async for _ in follow(gen, None, frame_s=0.02, done=_done):
        pass


async def test_the_frames_of_many_steps_go_out_in_one_round_trip(
    redis_url: str, postgres_url: str
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b), anyio.create_task_group() as tg:
        writers: list[Writer] = []
        owned, mirrors = [], []
        for _ in range(20):
            sid = await _session(a.store)
            writer = Writer(a.store, sid)
            owned.append(a.broker.start((sid, 0), writer))
            writer.give("0")
            writers.append(writer)
        await _until(lambda: all(gen.text == "0" for gen in owned))
        for writer in writers:
            mirror = b.broker.start((writer.session_id, 0), Writer(b.store, writer.session_id))
            tg.start_soon(_view, mirror)
            mirrors.append(mirror)
        await _until(lambda: all(m.text == "0" for m in mirrors))
        rounds = 5
        calls = a.redis.calls
        for piece in range(1, rounds + 1):
            for writer in writers:
                writer.give(f" {piece}")
            expected = "0" + "".join(f" {p}" for p in range(1, piece + 1))
            await _until(lambda expected=expected: all(m.text == expected for m in mirrors))  # type: ignore[misc]
        # A frame of twenty steps is one round trip (the worker's tick may come in between),
        # not twenty.
        assert a.redis.calls - calls <= 2 * rounds + 4, a.redis.calls - calls
        for writer in writers:
            writer.give("<end>")
        with anyio.fail_after(10):
            await _until(lambda: all(gen.finished for gen in mirrors))
        assert all(m.text == "0 1 2 3 4 5" for m in mirrors)


async def test_scripts_lost_by_redis_are_loaded_again_alone_or_in_a_pipeline(
    redis_url: str,
) -> None:
    redis = await SharedRedis.connect(redis_url)
    try:
        script = redis.client.register_script("return tonumber(ARGV[1]) + #KEYS")
        for calls in ([(["k"], [1])], [(["k"], [1]), (["k", "l"], [2])]):
            await redis.client.script_flush()  # as a restarted Redis has none
            assert await run_scripts(redis, script, calls) == [2, 4][: len(calls)]
            assert await run_scripts(redis, script, calls) == [2, 4][: len(calls)]
    finally:
        await redis.close()
