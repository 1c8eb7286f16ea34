"""A step stopped and written again at once on the distributed broker, against real Redis and
PostgreSQL (workers in one test process, as in test_broker_redis.py): the old writer is still
letting go of the step's lease when the new generation starts, and its stop is announced to
every worker, possibly after the new one has begun."""

from __future__ import annotations

import anyio
import pytest

from server.broker_stops_redis import Stop, announce
from server.broker_stream_redis import StepKeys
from server.events import Event
from server.records import Finished
from server.store import Conflict
from server.streaming import Generation
from tests.test_broker_redis import (
    LEASE_S,
    Writer,
    _read,
    _step,
    _text,
    _until,
    _writing,
    workers,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("where", ["same worker", "other worker"])
async def test_a_step_stopped_and_written_again_at_once_is_written(
    redis_url: str, postgres_url: str, where: str
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b):
        sid, first, old = await _writing(a, "Stopped half")
        # Stopped on the owner's worker, or on another one (announced to the owner).
        there = a if where == "same worker" else b
        assert await there.store.stop_step(sid, 0, "Stopped half")
        there.broker.end(sid, 0)
        # "Write it again" at once: the old writer may still hold the step's lease.
        assert await there.store.reopen_step(sid, 0)
        second = Writer(there.store, sid)
        again = there.broker.start((sid, 0), second)
        assert again is not old
        second.give("Written again", "<end>")
        seen: list[Event] = []
        with anyio.fail_after(LEASE_S + 5):
            await _read(again, None, seen)
        assert first.versions and second.versions[0] > first.versions[0]
    assert seen[-1] == Event("done", "<p>done</p>") and _text(seen) == "Written again"
    step = await _step(postgres_url, sid)
    assert step is not None and (step.status, step.text) == ("done", "Written again")


async def test_a_stop_announced_late_does_not_end_the_step_written_again(
    redis_url: str, postgres_url: str
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b):
        sid, _first, _old = await _writing(a, "Stopped half")
        assert await a.store.stop_step(sid, 0, "Stopped half")
        a.broker.end(sid, 0)
        await _until(lambda: a.broker.get((sid, 0)) is None)  # the old writer let go
        assert await b.store.reopen_step(sid, 0)
        second = Writer(b.store, sid)
        may_begin = anyio.Event()

        async def work(gen: Generation) -> None:
            await may_begin.wait()
            await second(gen)

        again = b.broker.start((sid, 0), work)
        await _until(lambda: again.owned)
        # The stop reaches B only now, as B begins the step again (a loaded worker, a slow
        # network): B writes on.
        await announce(a.redis, Stop(sid, 0))
        await anyio.sleep(0.3)
        may_begin.set()
        await _until(lambda: bool(second.versions))
        await anyio.sleep(0.3)
        assert not again.ended
        second.give("Written again", "<end>")
        seen: list[Event] = []
        with anyio.fail_after(5):
            await _read(again, None, seen)
    assert seen[-1] == Event("done", "<p>done</p>") and _text(seen) == "Written again"


async def test_a_viewer_of_a_step_taken_over_and_found_finished_never_sees_its_text_go(
    redis_url: str, postgres_url: str
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b):
        sid, first, _gen_a = await _writing(a, "The whole text")
        may_begin = anyio.Event()
        begun: list[int] = []

        async def work(gen: Generation) -> None:
            await may_begin.wait()
            try:
                begun.append(await b.store.begin_generation(sid, 0))
            except Conflict:
                return

        gen_b = b.broker.start((sid, 0), work)
        early: list[Event] = []
        late: list[Event] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read, gen_b, None, early)
            await _until(lambda: gen_b.text == "The whole text")
            # The owner finishes the step and its lease goes before its last frame is
            # published: B takes the step, and its work has yet to find the step finished.
            await a.store.finish_step(
                sid,
                0,
                Finished(text="The whole text", source="model", model="test"),
                version=first.versions[0],
                open_next=None,
            )
            await a.redis.client.delete(StepKeys((sid, 0)).lease)
            with anyio.fail_after(LEASE_S + 5):
                await _until(lambda: gen_b.owned)
            tg.start_soon(_read, gen_b, None, late)  # a viewer arriving meanwhile
            await _until(lambda: gen_b.viewers == 2)
            may_begin.set()
        assert not begun and gen_b.finished
        for seen in (early, late):
            snapshots = [e.data for e in seen if e.event == "snapshot"]
            assert snapshots == ["The whole text"] and _text(seen) == "The whole text"
            assert seen[-1] == Event("done", "<p>done</p>")
        first.give("<end>")


def test_a_stop_names_the_worker_that_announced_it_and_older_messages_still_parse() -> None:
    stop = Stop("sid", 2, following=True, deleted=False, origin="a1b2")
    assert Stop.parse(stop.message()) == stop
    assert Stop.parse("sid 2 1 1") == Stop("sid", 2, following=True, deleted=True)
    assert Stop.parse("sid 2 0") == Stop("sid", 2)
    assert Stop.parse("sid x 0") is None
