"""The distributed broker's publishing under the races a loaded cluster runs into, against real
Redis and PostgreSQL (two workers in one test process, as in test_broker_redis.py)."""

from __future__ import annotations

import logging

import anyio
import pytest

from server.broker_redis import RedisBroker
from server.broker_stream_redis import StepKeys
from server.events import Event
from server.records import Finished
from server.store import Conflict, Step, Store
from server.streaming import Generation
from tests.test_broker_redis import LEASE_S, Writer, _read, _session, _until, _writing, workers

pytestmark = pytest.mark.anyio


async def test_a_takeover_of_a_step_finished_meanwhile_publishes_nothing_under_the_old_version(
    redis_url: str, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b):
        sid, first, _gen_a = await _writing(a, "The whole text")
        begun: list[int] = []

        async def work(gen: Generation) -> None:
            # What Journeys._run does on a step that is no longer open: nothing.
            try:
                begun.append(await b.store.begin_generation(sid, 0))
            except Conflict:
                return

        gen_b = b.broker.start((sid, 0), work)
        seen: list[Event] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read, gen_b, None, seen)
            await _until(lambda: gen_b.text == "The whole text")
            # The owner finishes the step in the store and its lease is gone before its last
            # frame reaches Redis (a loaded worker between two awaits): B takes the step over
            # and finds it finished.
            await a.store.finish_step(
                sid,
                0,
                Finished(text="The whole text", source="model", model="test"),
                version=first.versions[0],
                open_next=None,
            )
            keys = StepKeys((sid, 0))
            with caplog.at_level(logging.WARNING, logger="crossroads"):
                await a.redis.client.delete(keys.lease)
                with anyio.fail_after(LEASE_S + 5):
                    await _until(lambda: gen_b.ended)
                await anyio.sleep(0.3)  # B's publisher and lease release have run
        assert not begun and gen_b.finished
        assert seen[-1] == Event("done", "<p>done</p>")
        # Nothing appended under the version B did not write (its text is A's, at offset 14:
        # an entry at offset 0 was refused by XADD and failed the generation).
        entries = await a.redis.client.xrange(keys.stream(first.versions[0]))
        assert [entry_id.split("-")[0] for entry_id, _ in entries] == ["14"]
        failed = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert failed == [], [r.getMessage() for r in failed]
        first.give("<end>")


class SlowSteps:
    """The owner's store, whose step reads wait as a busy pool makes them (the rest as is)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    async def step(self, session_id: str, n: int) -> Step | None:
        await anyio.sleep(10 * LEASE_S)
        return await self._store.step(session_id, n)


async def test_a_slow_store_read_at_renewal_does_not_cost_the_owner_its_lease(
    redis_url: str, postgres_url: str
) -> None:
    async with workers(redis_url, postgres_url, 1) as (a,), anyio.create_task_group() as tg:
        owner = RedisBroker(
            tg,
            a.redis,
            SlowSteps(a.store),  # type: ignore[arg-type]
            grace_s=5.0,
            lease_s=LEASE_S,
            frame_s=0.02,
            live_ttl_s=60.0,
        )
        tg.start_soon(owner.run)
        sid = await _session(a.store)
        writer = Writer(a.store, sid)
        gen = owner.start((sid, 0), writer)
        writer.give("Before ")
        await _until(lambda: gen.text == "Before ")
        await anyio.sleep(2.5 * LEASE_S)  # renewals come due while the store is slow
        # Renewed all along: no other worker could have taken the step over meanwhile.
        assert await a.redis.client.pttl(StepKeys((sid, 0)).lease) > 0
        writer.give("and after", "<end>")
        with anyio.fail_after(LEASE_S + 5):
            await _until(lambda: gen.ended)
        assert gen.finished and gen.text == "Before and after"
        tg.cancel_scope.cancel()
