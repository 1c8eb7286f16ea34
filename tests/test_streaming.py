"""The generation broker without HTTP: single flight, snapshot then tail, resume, coalescing,
grace. On both backends (tests/brokers.py): the embedded Generations, and a RedisBroker whose
owned generations its viewers follow through the same `follow`."""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator, Callable

import anyio
import pytest

from server.broker import Broker
from server.events import Event, parse_event_id
from server.store import Conflict, Store
from server.streaming import Generation
from server.viewing import follow
from tests.brokers import BrokerFactory

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

PIECES = [f"word{i} " for i in range(40)] + ["caf\u00e9 \U0001f600 <b>&amp;</b>"]
FINAL = "".join(PIECES)


class Script:
    """A writer that appends one piece each time the test says so. Each word counts, even one
    said before the writer runs (a distributed broker begins it after a round trip to Redis)."""

    def __init__(self, store: Store | None = None, session_id: str = "") -> None:
        self.store = store  # begins its version from the store, if given (else version 1)
        self.session_id = session_id
        self.calls = 0
        self.said = 0
        self.step = anyio.Event()
        self.cancelled = anyio.Event()

    def advance(self) -> None:
        self.said += 1
        self.step.set()

    async def work(self, gen: Generation) -> None:
        self.calls += 1
        store = self.store
        gen.start(1 if store is None else await store.begin_generation(self.session_id, 0))
        try:
            for index, piece in enumerate(PIECES):
                while self.said <= index:
                    await self.step.wait()
                    self.step = anyio.Event()
                gen.append(piece)
            gen.finish(f"<section id='step-0'>{html.escape(FINAL)}</section>")
        except anyio.get_cancelled_exc_class():
            self.cancelled.set()
            raise


async def free_running(gen: Generation) -> None:
    gen.start(1)
    for piece in PIECES:
        gen.append(piece)
        await anyio.lowlevel.checkpoint()
    gen.finish("<section id='step-0'>done</section>")


def apply(events: list[Event]) -> str:
    """What a browser shows: snapshot replaces, chunk appends (both HTML-escaped)."""
    text = ""
    for event in events:
        if event.event == "snapshot":
            text = html.unescape(event.data)
        elif event.event == "chunk":
            text += html.unescape(event.data)
    return text


class Begun:
    """Works that begin the step's next version from the store, as Journeys._run does: the
    distributed broker tells a generation begun again from the old one by its version."""

    def __init__(self, store: Store, session_id: str) -> None:
        self.store = store
        self.session_id = session_id

    async def free_running(self, gen: Generation) -> None:
        try:
            gen.start(await self.store.begin_generation(self.session_id, 0))
        except Conflict:
            gen.finish()  # done or stopped: the viewers get the step as it is
            return
        for piece in PIECES:
            gen.append(piece)
            await anyio.lowlevel.checkpoint()
        gen.finish("<section id='step-0'>done</section>")


async def begun(store: Store) -> Begun:
    session = await store.create_session(owner="o", category="c", seed=1, questions_total=3)
    return Begun(store, session.id)


async def until(predicate: Callable[[], bool]) -> None:
    """Wait for the generation's state: what the broker does next may take a round trip to
    Redis, which `wait_all_tasks_blocked` does not wait for."""
    with anyio.fail_after(10):
        while not predicate():  # noqa: ASYNC110 - the broker changes it on its own tasks
            await anyio.sleep(0.005)


async def collect(stream: AsyncIterator[Event]) -> list[Event]:
    with anyio.fail_after(10):
        return [event async for event in stream]


@pytest.fixture
async def generations(brokers: BrokerFactory) -> Broker:
    return await brokers(grace_s=5.0)


async def test_single_flight_under_twenty_subscribers(generations: Broker) -> None:
    script = Script()
    gens = [generations.start(("s", 0), script.work) for _ in range(20)]
    assert all(gen is gens[0] for gen in gens)
    results: list[list[Event]] = []

    async def watch() -> None:
        results.append(await collect(follow(gens[0], None, frame_s=0)))

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(watch)
        await anyio.wait_all_tasks_blocked()
        for _ in PIECES:
            script.advance()
            await anyio.wait_all_tasks_blocked()
    assert script.calls == 1
    assert len(results) == 20
    for events in results:
        assert apply(events) == FINAL
        assert events[-1].event == "done"


async def test_every_subscriber_gets_exactly_the_final_text_whenever_it_joins(
    generations: Broker,
) -> None:
    script = Script()
    gen = generations.start(("s", 0), script.work)
    results: list[list[Event]] = []

    async def watch() -> None:
        results.append(await collect(follow(gen, None, frame_s=0)))

    async with anyio.create_task_group() as tg:
        for index, _ in enumerate(PIECES):
            if index % 5 == 0:
                tg.start_soon(watch)
            await anyio.wait_all_tasks_blocked()
            script.advance()
            await anyio.wait_all_tasks_blocked()
    assert len(results) == len(range(0, len(PIECES), 5))
    for events in results:
        assert events[0].event == "status"
        assert events[1].event == "snapshot"
        assert apply(events) == FINAL
        ids = [parse_event_id(e.id) for e in events if e.id]
        offsets = [pid[1] for pid in ids if pid]
        assert offsets == sorted(offsets)
        assert offsets[-1] == len(FINAL)  # offsets count code points, not bytes


async def test_resume_with_the_current_version_sends_only_the_missing_text(
    generations: Broker,
) -> None:
    script = Script()
    gen = generations.start(("s", 0), script.work)
    await anyio.wait_all_tasks_blocked()
    for _ in range(10):
        script.advance()
        await anyio.wait_all_tasks_blocked()
    await until(lambda: gen.text == "".join(PIECES[:10]))
    shown = len(gen.text) - 7  # the browser saw all but the last 7 code points
    events: list[Event] = []

    async def watch() -> None:
        events.extend(await collect(follow(gen, f"1.{shown}", frame_s=0)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        for _ in PIECES[10:]:
            await anyio.wait_all_tasks_blocked()
            script.advance()
    names = [e.event for e in events]
    assert names[0] == "status"
    assert "snapshot" not in names
    assert FINAL[:shown] + apply(events) == FINAL


@pytest.mark.parametrize("last_event_id", ["2.3", "0.1", "1.99999", "-1.2", "abc", "1.x", "", "1"])
async def test_an_unusable_last_event_id_gets_a_full_snapshot(
    generations: Broker, last_event_id: str
) -> None:
    gen = generations.start(("s", 0), free_running)
    events = await collect(follow(gen, last_event_id, frame_s=0))
    assert [e.event for e in events[:2]] == ["status", "snapshot"]
    assert apply(events) == FINAL


async def test_a_replaced_text_arrives_as_a_new_versioned_snapshot(
    generations: Broker,
) -> None:
    release = anyio.Event()

    async def work(gen: Generation) -> None:
        gen.start(1)
        gen.append("half a sentence that the model ")
        await release.wait()
        gen.replace("A prepared scenario.", 2)
        gen.finish("<section id='step-0'>A prepared scenario.</section>")

    gen = generations.start(("s", 0), work)
    events: list[Event] = []

    async def watch() -> None:
        events.extend(await collect(follow(gen, None, frame_s=0)))

    # Joins once the text is shown (distributed: once published, so no worker runs ahead).
    await until(lambda: gen.shown == len("half a sentence that the model "))
    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await until(lambda: gen.viewers == 1)
        await anyio.wait_all_tasks_blocked()
        release.set()
    snapshots = [e for e in events if e.event == "snapshot"]
    assert [s.id for s in snapshots] == ["1.31", "2.20"]
    assert apply(events) == "A prepared scenario."


async def test_chunks_are_coalesced_into_frames(generations: Broker) -> None:
    burst = anyio.Event()

    async def work(gen: Generation) -> None:
        gen.start(1)
        gen.append("first ")
        await burst.wait()
        for i in range(200):
            gen.append(f"t{i} ")
            await anyio.lowlevel.checkpoint()
        gen.finish("<section>done</section>")

    gen = generations.start(("s", 0), work)
    events: list[Event] = []

    async def watch() -> None:
        events.extend(await collect(follow(gen, None, frame_s=0.05)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await anyio.wait_all_tasks_blocked()
        burst.set()
    chunks = [e for e in events if e.event == "chunk"]
    assert 1 <= len(chunks) < 50  # 200 appends, far fewer frames
    assert apply(events) == "first " + "".join(f"t{i} " for i in range(200))


async def test_a_status_change_reaches_viewers(generations: Broker) -> None:
    go = anyio.Event()

    async def work(gen: Generation) -> None:
        gen.start(1)
        gen.set_status("queued: 2 ahead of you")
        await go.wait()
        gen.set_status("writing")
        gen.append("text")
        gen.finish("<section>text</section>")

    gen = generations.start(("s", 0), work)
    await until(lambda: gen.status.startswith("queued"))
    events: list[Event] = []

    async def watch() -> None:
        events.extend(await collect(follow(gen, None, frame_s=0)))

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch)
        await until(lambda: gen.viewers == 1)
        await anyio.wait_all_tasks_blocked()
        go.set()
    statuses = [e.data for e in events if e.event == "status"]
    assert statuses == ["queued: 2 ahead of you", "writing"]
    assert all(e.id is None for e in events if e.event in ("status", "done"))


async def test_a_generation_nobody_watches_is_cancelled_after_the_grace_period(
    brokers: BrokerFactory,
) -> None:
    script = Script()
    generations = await brokers(grace_s=0.2)
    gen = generations.start(("s", 0), script.work)
    with anyio.fail_after(5):
        await script.cancelled.wait()
    await anyio.wait_all_tasks_blocked()
    assert gen.ended and not gen.finished
    assert generations.get(("s", 0)) is None
    assert generations.abandoned == 1


async def test_the_last_viewer_leaving_starts_the_grace_period_and_a_return_cancels_it(
    brokers: BrokerFactory,
) -> None:
    script = Script()
    # The return comes at once: a grace of a second (not 0.3 s) outlasts any pause a busy
    # machine puts between two lines here. The grace timer, due before the sleep below
    # ends, has run by the time the sleep returns (the loop runs timers in order), so the
    # check after it is not a race.
    generations = await brokers(grace_s=1.0)
    gen = generations.start(("s", 0), script.work)
    viewer = follow(gen, None, frame_s=0)
    await viewer.__anext__()  # joined
    assert gen.viewers == 1
    await viewer.aclose()  # left: the grace period starts
    assert gen.viewers == 0
    again = follow(gen, None, frame_s=0)
    await again.__anext__()  # back before the grace ran out
    await anyio.sleep(1.2)  # past the grace: nothing may have been abandoned
    assert not gen.ended and generations.abandoned == 0
    assert not script.cancelled.is_set()
    await again.aclose()
    with anyio.fail_after(5):
        await script.cancelled.wait()


async def test_no_task_is_left_after_two_hundred_generations(brokers: BrokerFactory) -> None:
    generations = await brokers(grace_s=5.0)
    await anyio.wait_all_tasks_blocked()
    before = len(asyncio.all_tasks())  # the test's own and the broker's long-lived tasks
    for index in range(200):
        gen = generations.start((f"s{index}", 0), free_running)
        events = await collect(follow(gen, None, frame_s=0))
        assert events[-1].event == "done"
    with anyio.fail_after(10):
        while len(generations):  # noqa: ASYNC110 - each ends on a task of the broker's
            await anyio.sleep(0.01)
    await anyio.wait_all_tasks_blocked()
    assert len(asyncio.all_tasks()) == before


def test_event_ids_parse_strictly() -> None:
    assert parse_event_id("3.120") == (3, 120)
    for bad in (None, "", "3", "3.", ".3", "-1.2", "1.-2", "a.b", "1.2.3", "\u00b2.1", "1.\u0663"):
        assert parse_event_id(bad) is None


async def test_a_failing_generation_ends_alone_and_the_others_go_on(
    generations: Broker, store: Store
) -> None:
    # Both works of step 0 begin their version from the store, as Journeys._run does: the
    # distributed broker tells the generation begun again from the broken one by its version.
    step = await begun(store)

    async def broken(gen: Generation) -> None:
        gen.start(await store.begin_generation(step.session_id, 0))
        gen.append("half")
        raise RuntimeError("the disk is full")

    bad = generations.start((step.session_id, 0), broken)
    good = generations.start(("s", 1), free_running)
    bad_events = await collect(follow(bad, None, frame_s=0))
    good_events = await collect(follow(good, None, frame_s=0))
    assert bad.ended and not bad.finished
    assert "done" not in [e.event for e in bad_events]  # the browser reconnects and retries
    assert good_events[-1].event == "done"
    again = generations.start((step.session_id, 0), step.free_running)
    assert again is not bad
    assert (await collect(follow(again, None, frame_s=0)))[-1].event == "done"


async def test_done_never_waits_for_a_frame(generations: Broker) -> None:
    async def quick(gen: Generation) -> None:
        gen.start(1)
        gen.append("all of it at once")
        await anyio.lowlevel.checkpoint()
        gen.append(", and the end")
        gen.finish("<section>done</section>")

    gen = generations.start(("s", 0), quick)
    with anyio.fail_after(10):  # a frame of 30 s must not hold back the end
        events = [event async for event in follow(gen, None, frame_s=30)]
    assert events[-1].event == "done"
    assert apply(events) == "all of it at once, and the end"


async def test_a_viewer_arriving_while_an_abandoned_generation_cleans_up_gets_a_fresh_one(
    brokers: BrokerFactory, store: Store
) -> None:
    step = await begun(store)
    cleanup_may_finish = anyio.Event()

    async def slow_to_clean_up(gen: Generation) -> None:
        gen.start(await store.begin_generation(step.session_id, 0))
        gen.append("never finished")
        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await cleanup_may_finish.wait()

    generations = await brokers(grace_s=0.05)
    key = (step.session_id, 0)
    old = generations.start(key, slow_to_clean_up)
    try:
        with anyio.fail_after(5):
            while not old.ended:  # noqa: ASYNC110 - the grace timer is a loop callback
                await anyio.sleep(0.01)
        fresh = generations.start(key, step.free_running)
        assert fresh is not old
        events = await collect(follow(fresh, None, frame_s=0))
        assert events[-1].event == "done"
        assert apply(events) == FINAL
    finally:
        cleanup_may_finish.set()  # whatever happened, the broker's tasks can end


async def test_only_the_visible_part_is_streamed_and_ids_count_into_the_text(
    generations: Broker,
) -> None:
    """`visible` holds back a tail: snapshot and chunks stop where it says, and their ids are
    offsets into the text itself, so a resume picks up exactly where the browser stopped."""

    def visible(text: str) -> int:
        cut = text.find("|")
        return len(text) if cut < 0 else cut

    async def work(gen: Generation) -> None:
        gen.start(1)
        for piece in ["abc ", "def ", "|hidden", " tail"]:
            gen.append(piece)
            await anyio.lowlevel.checkpoint()
        gen.finish("<section>done</section>")

    gen = generations.start(("s", 0), work, visible=visible)
    events = await collect(follow(gen, None, frame_s=0))
    text_events = [e for e in events if e.event in ("snapshot", "chunk")]
    assert apply(events) == "abc def "
    assert all("hidden" not in e.data for e in text_events)
    assert text_events[-1].id == "1.8"
    assert events[-1].event == "done"


async def test_a_step_started_again_right_after_it_was_ended_is_written_and_finishes(
    generations: Broker, store: Store
) -> None:
    """Stop, then "Write it again" at once: the new generation is not the stopped one's, and
    the end of the old one (announced to every worker) must not end the new one."""
    step = await begun(store)
    key = (step.session_id, 0)
    script = Script(store, step.session_id)
    old = generations.start(key, script.work)
    script.advance()
    await until(lambda: old.text != "")
    assert await store.stop_step(step.session_id, 0, old.text)
    generations.end(step.session_id, 0)
    assert await store.reopen_step(step.session_id, 0)
    again = generations.start(key, step.free_running)
    assert again is not old
    events = await collect(follow(again, None, frame_s=0))
    assert events[-1].event == "done"
    assert apply(events) == FINAL
