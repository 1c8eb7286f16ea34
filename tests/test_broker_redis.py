"""The distributed broker against real Redis and PostgreSQL: two workers in one test process,
each a RedisBroker with its own Redis client and store, writing one step between them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.to_thread
import pytest
from anyio.abc import TaskGroup

from server.broker_redis import RedisBroker
from server.broker_stream_redis import TAKEN_OVER, StepKeys
from server.events import Event
from server.records import Finished
from server.shared_redis import PAUSE_S, SharedRedis
from server.store import Conflict, Step, Store
from server.store_postgres import PostgresStore
from server.streaming import Generation
from server.viewing import follow
from tests.redis_server import RedisServer

pytestmark = pytest.mark.anyio
# Short, for quick takeovers, yet renewed in time on a busy machine.
LEASE_S = 2.0
REPLACE = "<replace>"  # a piece for Writer: the text so far is replaced by the rest


@dataclass
class Writer:
    """A step's work that writes what the test feeds it, then finishes the step (what
    Journeys._run does, without a model): begin under a new version, append, finish fenced."""

    store: Store
    session_id: str
    step: int = 0
    feed: list[str] = field(default_factory=list)
    fed: anyio.Event = field(default_factory=anyio.Event)
    shielded: bool = False  # goes on writing though cancelled: a paused process resuming
    versions: list[int] = field(default_factory=list)
    conflicts: int = 0

    def give(self, *pieces: str) -> None:
        self.feed.extend(pieces)
        self.fed.set()

    async def __call__(self, gen: Generation) -> None:
        with anyio.CancelScope(shield=self.shielded):
            version = await self.store.begin_generation(self.session_id, self.step)
            self.versions.append(version)
            gen.start(version)
            gen.set_status("writing")
            while True:
                while not self.feed:
                    await self.fed.wait()
                    self.fed = anyio.Event()
                piece = self.feed.pop(0)
                if piece == "<end>":
                    break
                if piece.startswith(REPLACE):
                    # Shown text replaced (a fallback): under a new version, fenced on this one.
                    try:
                        bumped = await self.store.bump_version(
                            self.session_id, self.step, gen.version
                        )
                    except Conflict:
                        self.conflicts += 1
                        return
                    gen.replace(piece.removeprefix(REPLACE), bumped)
                    continue
                gen.append(piece)
            try:
                await self.store.finish_step(
                    self.session_id,
                    self.step,
                    Finished(text=gen.text, source="model", model="test"),
                    version=gen.version,
                    open_next=None,
                )
            except Conflict:
                self.conflicts += 1
                return
            gen.finish()


@dataclass
class Worker:
    broker: RedisBroker
    redis: SharedRedis
    store: Store


@asynccontextmanager
async def workers(
    redis_url: str, postgres_url: str, count: int, *, grace_s: float = 5.0
) -> AsyncIterator[list[Worker]]:
    opened: list[Worker] = []
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                redis = await SharedRedis.connect(redis_url)
                store = await PostgresStore.connect(postgres_url)
                opened.append(Worker(_broker(tg, redis, store, grace_s), redis, store))
            yield opened
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            for worker in opened:
                await worker.redis.close()
                await worker.store.close()


def _broker(tg: TaskGroup, redis: SharedRedis, store: Store, grace_s: float) -> RedisBroker:
    broker = RedisBroker(
        tg, redis, store, grace_s=grace_s, lease_s=LEASE_S, frame_s=0.02, live_ttl_s=60.0
    )
    tg.start_soon(broker.run)
    return broker


async def _session(store: Store) -> str:
    session = await store.create_session(owner="o", category="c", seed=1, questions_total=3)
    return session.id


async def _writing(worker: Worker, *pieces: str) -> tuple[str, Writer, Generation]:
    """A new session whose step 0 `worker` writes, `pieces` written and seen there."""
    sid = await _session(worker.store)
    writer = Writer(worker.store, sid)
    gen = worker.broker.start((sid, 0), writer)
    writer.give(*pieces)
    text = "".join(pieces)
    await _until(lambda: gen.text == text)
    return sid, writer, gen


async def _done() -> str:
    return "<p>done</p>"


async def _until(predicate: Callable[[], bool]) -> None:
    """Poll (the broker's state changes on several tasks); fail_after bounds it."""
    with anyio.fail_after(5.0):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.01)


async def _read(gen: Generation, last_event_id: str | None, out: list[Event]) -> None:
    async for event in follow(gen, last_event_id, frame_s=0.02, done=_done):
        out.append(event)


def _text(events: list[Event]) -> str:
    """What a browser shows: each snapshot replaces the text, each chunk adds to it."""
    text = ""
    for event in events:
        if event.event == "snapshot":
            text = event.data
        elif event.event == "chunk":
            text += event.data
    return text


async def test_a_resume_on_another_worker_gets_exactly_the_missing_text(
    redis_url: str, postgres_url: str
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b):
        sid, writer, gen_a = await _writing(a, "Hello ", "there")
        seen_on_a: list[Event] = []
        with anyio.move_on_after(0.3):
            await _read(gen_a, None, seen_on_a)
        last_id = [e.id for e in seen_on_a if e.id][-1]
        assert last_id == f"{writer.versions[0]}.11"

        gen_b = b.broker.start((sid, 0), Writer(b.store, sid))
        assert gen_b is not gen_a
        resumed: list[Event] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read, gen_b, last_id, resumed)
            await _until(lambda: gen_b.viewers == 1)
            # A writes the step, B only follows it: it runs once in the deployment.
            assert (len(a.broker), len(b.broker), b.broker.viewers()) == (1, 0, 1)
            writer.give(", friend", "<end>")
        text_events = [e for e in resumed if e.event in ("snapshot", "chunk")]
        assert [e.event for e in text_events] == ["chunk"] * len(text_events)
        assert "".join(e.data for e in text_events) == ", friend"
        assert resumed[-1] == Event("done", "<p>done</p>")
        step = await b.store.step(sid, 0)
        assert step is not None and step.text == "Hello there, friend"


async def test_only_one_reader_blocks_for_every_mirror_on_a_worker(
    redis_url: str, postgres_url: str
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b):
        writers, owned = [], []
        for _ in range(3):
            sid = await _session(a.store)
            writer = Writer(a.store, sid)
            owned.append(a.broker.start((sid, 0), writer))
            writer.give("text")
            writers.append(writer)
        await _until(lambda: all(gen.text == "text" for gen in owned))  # A writes all three
        async with anyio.create_task_group() as tg:
            mirrors = [
                b.broker.start((w.session_id, 0), Writer(b.store, w.session_id)) for w in writers
            ]
            for mirror in mirrors:
                for _ in range(2):
                    tg.start_soon(_read, mirror, None, [])
            await _until(lambda: all(m.text == "text" for m in mirrors))
            # Six viewers of three steps on B: never more than one connection blocked reading.
            blocked = []
            for _ in range(20):
                clients = await a.redis.client.client_list()
                blocked.append(sum(1 for c in clients if "b" in c.get("flags", "")))
                await anyio.sleep(0.05)
            assert max(blocked) == 1
            for writer in writers:
                writer.give("<end>")


async def test_a_lost_lease_is_taken_over_under_a_new_version(
    redis_url: str, postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crossroads")
    async with workers(redis_url, postgres_url, 2) as (a, b):
        sid, first, gen_a = await _writing(a, "The old text")
        second = Writer(b.store, sid)
        gen_b = b.broker.start((sid, 0), second)
        seen: list[Event] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read, gen_b, None, seen)
            await _until(lambda: gen_b.text == "The old text")
            # The owner dies: its lease is gone, and nobody renews it.
            await a.redis.client.delete(StepKeys((sid, 0)).lease)
            with anyio.fail_after(LEASE_S + 2):
                await _until(lambda: bool(second.versions))
            second.give("A new text", "<end>")
        # The old owner finds its lease gone at its next renewal and stops.
        await _until(lambda: gen_a.ended)
        assert not gen_a.finished
        assert second.versions[0] > first.versions[0]
        assert _text(seen) == "A new text"
        snapshots = [e for e in seen if e.event == "snapshot"]
        assert snapshots[-1].id is not None and snapshots[-1].id.startswith(
            f"{second.versions[0]}."
        )
        assert seen[-1] == Event("done", "<p>done</p>")
        step = await a.store.step(sid, 0)
        assert step is not None
        assert (step.status, step.text, step.version) == ("done", "A new text", second.versions[0])
        # Said to the operator once, by the worker that took it over, and counted there.
        (taken,) = _logged(caplog, "Step taken over")
        fields = taken.__dict__["fields"]
        assert (fields["session_id"], fields["step"]) == (sid, 0)
        assert (fields["version"], fields["previous_version"]) == (
            second.versions[0],
            first.versions[0],
        )
        assert (a.broker.takeovers, b.broker.takeovers) == (0, 1)


async def test_a_viewer_elsewhere_is_told_why_a_taken_over_step_starts_again(
    redis_url: str, postgres_url: str
) -> None:
    async with workers(redis_url, postgres_url, 3) as (a, b, c):
        sid, _first, _gen_a = await _writing(a, "The old text")
        others = [Writer(worker.store, sid) for worker in (b, c)]
        gens = [w.broker.start((sid, 0), writer) for w, writer in zip((b, c), others, strict=True)]
        seen: list[list[Event]] = [[], []]
        async with anyio.create_task_group() as tg:
            for gen, out in zip(gens, seen, strict=True):
                tg.start_soon(_read, gen, None, out)
            await _until(lambda: all(gen.text == "The old text" for gen in gens))
            await a.redis.client.delete(StepKeys((sid, 0)).lease)  # the owner died
            with anyio.fail_after(LEASE_S + 2):
                await _until(lambda: any(writer.versions for writer in others))
            taker = 0 if others[0].versions else 1
            viewer = 1 - taker
            # Told before any of the new text is written.
            await _until(lambda: Event("status", TAKEN_OVER) in seen[viewer])
            others[taker].give("A new text", "<end>")
        assert _text(seen[viewer]) == "A new text"
        assert not others[viewer].versions
        statuses = [e.data for e in seen[viewer] if e.event == "status"]
        assert statuses[-1] == "writing"  # once the new text came
        assert seen[viewer][-1] == Event("done", "<p>done</p>")


async def test_a_paused_owners_late_writes_change_nothing(
    redis_url: str, postgres_url: str
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b):
        sid = await _session(a.store)
        paused = Writer(a.store, sid, shielded=True)
        gen_a = a.broker.start((sid, 0), paused)
        paused.give("Old ")
        await _until(lambda: gen_a.text == "Old ")
        keys = StepKeys((sid, 0))
        await a.redis.client.delete(keys.lease)
        taker = Writer(b.store, sid)
        gen_b = b.broker.start((sid, 0), taker)
        await _until(lambda: bool(taker.versions))
        taker.give("New text", "<end>")
        await _until(lambda: b.broker.get((sid, 0)) is None)  # written, published, let go
        assert gen_b.finished
        old_stream = await a.redis.client.xrange(keys.stream(paused.versions[0]))
        new_stream = await a.redis.client.xrange(keys.stream(taker.versions[0]))
        # The paused owner resumes and writes on, then replaces its text (as a fallback does):
        # nothing of it reaches Redis or the store, not even a new version.
        paused.give("late words", f"{REPLACE}Fallback", "<end>")
        await _until(lambda: paused.conflicts == 1)
        await anyio.sleep(0.2)
        assert await a.redis.client.xrange(keys.stream(paused.versions[0])) == old_stream
        assert await a.redis.client.xrange(keys.stream(taker.versions[0])) == new_stream
        step = await a.store.step(sid, 0)
        assert step is not None
        assert (step.status, step.text, step.version) == ("done", "New text", taker.versions[0])


async def test_a_stop_on_another_worker_ends_the_owners_generation_within_a_second(
    redis_url: str, postgres_url: str
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b):
        sid, _writer, gen_a = await _writing(a, "Half a ")
        seen: list[Event] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read, gen_a, None, seen)
            await _until(lambda: gen_a.viewers == 1)
            assert await b.store.stop_step(sid, 0, "Half a ")
            b.broker.end(sid, 0)
            with anyio.fail_after(1.0):
                await _until(lambda: gen_a.ended)
        assert gen_a.finished and seen[-1] == Event("done", "<p>done</p>")
        step = await a.store.step(sid, 0)
        assert step is not None and step.status == "stopped"


async def test_a_viewer_on_another_worker_keeps_the_step_alive_past_its_grace(
    redis_url: str, postgres_url: str
) -> None:
    grace_s = 1.5
    async with workers(redis_url, postgres_url, 2, grace_s=grace_s) as (a, b):
        sid, _writer, gen_a = await _writing(a, "Still here")  # A owns the step, B will follow it
        gen_b = b.broker.start((sid, 0), Writer(b.store, sid))
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read, gen_b, None, [])
            # Nobody watches on the owner's worker: the viewer on B is what keeps it going.
            await anyio.sleep(2 * grace_s)
            assert not gen_a.ended and a.broker.abandoned == 0
            tg.cancel_scope.cancel()
        with anyio.fail_after(grace_s + 2):
            await _until(lambda: gen_a.ended)
        assert a.broker.abandoned == 1 and not gen_a.finished


async def test_deleting_a_session_removes_its_keys_at_once_on_every_worker(
    redis_url: str, postgres_url: str
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b):
        sid = await _session(a.store)
        done = Writer(a.store, sid)
        a.broker.start((sid, 0), done)
        done.give("A finished scenario", "<end>")  # its stream stays for minutes after the end
        await _until(lambda: a.broker.get((sid, 0)) is None)
        await a.store.open_step(sid, 1, "question")
        writer = Writer(a.store, sid, step=1)
        gen_a = a.broker.start((sid, 1), writer)
        writer.give("Half a question")
        await _until(lambda: gen_a.text == "Half a question")
        gen_b = b.broker.start((sid, 1), Writer(b.store, sid, step=1))
        pattern = f"crossroads:gen:{sid}:*"
        seen: list[Event] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read, gen_b, None, seen)
            await _until(lambda: gen_b.text == "Half a question")
            assert len(await a.redis.client.keys(pattern)) >= 5  # headers, streams, lease, seen
            await b.store.delete_session(sid)
            b.broker.end(sid, 0, following=True, deleted=True)
            await _until(lambda: gen_a.ended and gen_b.ended)
        assert gen_a.finished and seen[-1] == Event("done", "<p>done</p>")
        with anyio.fail_after(2.0):
            while await a.redis.client.keys(pattern):  # noqa: ASYNC110
                await anyio.sleep(0.05)
        # Nobody writes them again: not the old owner, not the other worker's mirror.
        await anyio.sleep(3 * a.broker.check_s)
        assert await a.redis.client.keys(pattern) == []


async def test_a_step_begun_while_redis_is_away_is_claimed_and_published_when_it_returns(
    redis_server: RedisServer,
    redis_url: str,
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b), anyio.create_task_group() as tg:
        sid = await _session(a.store)
        redis_server.stop()
        # Written without a lease (only the store's version fences it): the viewer here reads
        # it, nobody elsewhere can.
        writer = Writer(a.store, sid)
        gen_a = a.broker.start((sid, 0), writer)
        here: list[Event] = []
        tg.start_soon(_read, gen_a, None, here)
        writer.give("Written while ")
        await _until(lambda: gen_a.text == "Written while ")
        await anyio.to_thread.run_sync(redis_server.start)  # empty, as after a crash
        # Back: A holds the step's lease again and publishes what it has, whole, under a new
        # version (after the client's pause of a few seconds since its last failure).
        keys = StepKeys((sid, 0))
        with anyio.fail_after(PAUSE_S + LEASE_S + 5):
            while not await a.redis.client.hget(keys.header, "version"):  # noqa: ASYNC110
                await anyio.sleep(0.05)
        elsewhere: list[Event] = []
        follower = Writer(b.store, sid)
        gen_b = b.broker.start((sid, 0), follower)
        tg.start_soon(_read, gen_b, None, elsewhere)
        await _until(lambda: gen_b.text == "Written while ")
        writer.give("Redis was away", "<end>")
        await _until(lambda: gen_a.ended and gen_b.ended)
    assert gen_a.finished and not follower.versions  # B followed, never wrote
    for seen in (here, elsewhere):
        assert _text(seen) == "Written while Redis was away"
        assert seen[-1] == Event("done", "<p>done</p>")
    step = await _step(postgres_url, sid)
    assert step is not None
    assert (step.status, step.text) == ("done", "Written while Redis was away")
    assert step.version == gen_a.version > writer.versions[0]
    # Said with the error's text, never with an empty traceback ("NoneType: None").
    unpublished = _logged(caplog, "Generation not published: Redis is unreachable")
    assert unpublished and all(r.exc_info is None for r in unpublished)
    assert "NoneType: None" not in caplog.text


async def test_a_stop_pressed_while_redis_is_away_reaches_the_owner_through_the_store(
    redis_server: RedisServer, redis_url: str, postgres_url: str
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b), anyio.create_task_group() as tg:
        sid = await _session(a.store)
        writer = Writer(a.store, sid)
        gen_a = a.broker.start((sid, 0), writer)
        seen: list[Event] = []
        tg.start_soon(_read, gen_a, None, seen)
        writer.give("Half a ")
        await _until(lambda: gen_a.text == "Half a ")
        redis_server.stop()
        assert await b.store.stop_step(sid, 0, "Half a ")
        b.broker.end(sid, 0)  # not announced: Redis is away
        # Read from the store at the owner's next lease renewal.
        with anyio.fail_after(LEASE_S + 2):
            await _until(lambda: gen_a.ended)
    assert gen_a.finished and seen[-1] == Event("done", "<p>done</p>")


async def _step(postgres_url: str, sid: str) -> Step | None:
    store = await PostgresStore.connect(postgres_url)
    try:
        return await store.step(sid, 0)
    finally:
        await store.close()


async def test_the_stop_listener_says_once_that_redis_is_away_and_once_that_it_is_back(
    redis_server: RedisServer,
    redis_url: str,
    postgres_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="crossroads")
    async with workers(redis_url, postgres_url, 1):
        await anyio.sleep(0.5)  # listening
        redis_server.stop()
        await anyio.sleep(4)  # the listener retries every second meanwhile
        await anyio.to_thread.run_sync(redis_server.start)
        with anyio.fail_after(PAUSE_S + 10):
            while not _logged(caplog, "Stop listener listening again"):  # noqa: ASYNC110
                await anyio.sleep(0.1)
    failed = _logged(caplog, "Stop listener failed; listening again")
    assert len(failed) == 1
    assert failed[0].levelno == logging.WARNING and failed[0].exc_info is None
    assert len(_logged(caplog, "Stop listener listening again")) == 1


def _logged(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]
