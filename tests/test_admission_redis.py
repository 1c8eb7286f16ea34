"""Distributed admission against a real Redis: one budget and one FIFO queue for every worker.

The "workers" here are three RedisAdmission instances in this one process, each with its own
Redis client and connection pool (as three worker processes would have); what they share is only
what is in Redis. A killed worker is one whose renewal task is cancelled while its call never
releases its slot."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
import redis

from server import shared_redis
from server.admission import NotAdmitted
from server.admission_redis import QUEUE, SLOTS, RedisAdmission
from server.app import create_app
from server.capacity import AdaptiveLimit
from server.capacity_redis import RedisLimit
from server.reasons import CAUSES
from server.shared_redis import SharedRedis
from tests import stored
from tests.databases import Database
from tests.fake_upstream import FakeUpstream, serve
from tests.redis_server import RedisServer
from tests.servers import serve_app
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

LONG_S = 60.0  # a queue wait that never runs out within a test
BOUND_S = 15.0  # generous: only proves that something ends


class Call:
    """One model call: takes a slot on `admission`, records its places in line, holds the slot
    until told to leave (or forever when `leave` is never set)."""

    def __init__(self, admission: RedisAdmission, name: str, book: Book) -> None:
        self.admission = admission
        self.name = name
        self.book = book
        self.positions: list[int] = []
        self.queued = anyio.Event()
        self.entered = anyio.Event()
        self.leave = anyio.Event()
        self.ended = anyio.Event()
        self.refused: NotAdmitted | None = None
        self.settled = anyio.Event()  # queued, entered or ended: where it stands is known

    def _position(self, ahead: int) -> None:
        self.positions.append(ahead)
        self.queued.set()
        self.settled.set()

    async def run(self) -> None:
        try:
            async with self.admission.slot(self._position):
                self.book.enter(self.name)
                self.entered.set()
                self.settled.set()
                try:
                    await self.leave.wait()
                finally:
                    self.book.leave()
        except NotAdmitted as refused:
            self.refused = refused
        finally:
            self.ended.set()
            self.settled.set()


class Book:
    """What the upstream would see: the calls running at once, and the most ever."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.order: list[str] = []

    def enter(self, name: str) -> None:
        self.running += 1
        self.most = max(self.most, self.running)
        self.order.append(name)

    def leave(self) -> None:
        self.running -= 1


def _check(url: str) -> redis.Redis:
    """The test's own look at what Redis holds."""
    return redis.Redis.from_url(url, socket_timeout=5, decode_responses=True)


async def _worker(
    stack: AsyncExitStack,
    url: str,
    limit: int,
    *,
    queue_timeout_s: float = LONG_S,
    lease_s: float = 10.0,
    adaptive: bool = False,
    pause_s: float = shared_redis.PAUSE_S,
) -> RedisAdmission:
    redis = SharedRedis(shared_redis.client(url), pause_s=pause_s)
    stack.push_async_callback(redis.close)
    shared = RedisLimit(redis, limit) if adaptive else None
    return RedisAdmission(
        redis,
        AdaptiveLimit(limit, adaptive=adaptive, store=shared),
        queue_timeout_s=queue_timeout_s,
        lease_s=lease_s,
        shared_limit=shared,
    )


async def test_two_slots_for_twelve_calls_over_three_workers(redis_url: str) -> None:
    book = Book()
    async with AsyncExitStack() as stack:
        workers = [await _worker(stack, redis_url, 2) for _ in range(3)]
        calls = [Call(workers[i % 3], f"call{i}", book) for i in range(12)]
        async with anyio.create_task_group() as tg:
            for worker in workers:
                tg.start_soon(worker.run)
            # One at a time, so that the order of arrival is known.
            for call in calls:
                tg.start_soon(call.run)
                with anyio.fail_after(BOUND_S):
                    await call.settled.wait()
            assert [call.entered.is_set() for call in calls[:2]] == [True, True]
            # Each waiter's first place is its global place: all who came before it, less the two
            # running; it never waits behind a later arrival on its own worker only.
            assert [call.positions[0] for call in calls[2:]] == list(range(10))
            assert workers[0].waiting == 10 or workers[2].waiting == 10
            # One slot frees at a time (the next call is in before the one ahead of it leaves),
            # so the order in which calls enter is the order the line grants them.
            for done, running in zip(calls, [*calls[1:], None], strict=True):
                with anyio.fail_after(BOUND_S):
                    await done.entered.wait()
                    if running is not None:
                        await running.entered.wait()
                await anyio.sleep(0.05)  # let the others poll while these run
                done.leave.set()
            tg.cancel_scope.cancel()
        assert book.most == 2
        assert book.order == [call.name for call in calls]  # one FIFO across the workers
        for call in calls:
            assert call.positions == sorted(call.positions, reverse=True), call.positions
            assert call.refused is None
        with _check(redis_url) as check:
            assert check.zcard(SLOTS) == 0 and check.zcard(QUEUE) == 0


async def test_those_past_the_queue_timeout_fall_back(redis_url: str) -> None:
    book = Book()
    async with AsyncExitStack() as stack:
        holders_at = await _worker(stack, redis_url, 2)
        waiters_at = [await _worker(stack, redis_url, 2, queue_timeout_s=1.0) for _ in range(2)]
        holders = [Call(holders_at, f"holder{i}", book) for i in range(2)]
        waiters = [Call(waiters_at[i % 2], f"waiter{i}", book) for i in range(4)]
        async with anyio.create_task_group() as tg:
            for call in holders:
                tg.start_soon(call.run)
                await call.entered.wait()
            for call in waiters:
                tg.start_soon(call.run)
            with anyio.fail_after(BOUND_S):
                for call in waiters:
                    await call.ended.wait()
            assert [call.refused and call.refused.reason for call in waiters] == [
                "queue_timeout"
            ] * 4
            assert all(call.positions for call in waiters)  # they were told their place
            with _check(redis_url) as check:
                assert check.zcard(QUEUE) == 0  # gone from the line, not blocking it
                assert check.zcard(SLOTS) == 2
            holders[0].leave.set()
            late = Call(waiters_at[0], "late", book)
            tg.start_soon(late.run)
            with anyio.fail_after(BOUND_S):
                await late.entered.wait()
            assert late.positions == []  # admitted at once: no ghost ahead of it
            tg.cancel_scope.cancel()
        assert book.most == 2


async def test_a_dead_workers_slot_returns_after_its_lease(redis_url: str) -> None:
    book = Book()
    async with AsyncExitStack() as stack:
        dying = await _worker(stack, redis_url, 1, lease_s=2.0)
        other = await _worker(stack, redis_url, 1, lease_s=2.0)
        holder = Call(dying, "holder", book)
        waiter = Call(other, "waiter", book)
        async with anyio.create_task_group() as tg:
            renewals = anyio.CancelScope()

            async def renew_dying() -> None:
                with renewals:
                    await dying.run()

            tg.start_soon(renew_dying)
            tg.start_soon(other.run)
            tg.start_soon(holder.run)
            await holder.entered.wait()
            tg.start_soon(waiter.run)
            await waiter.queued.wait()
            assert waiter.positions == [0]
            await anyio.sleep(3.0)  # past a lease: the renewals keep the holder's slot
            assert not waiter.entered.is_set()
            renewals.cancel()  # the worker dies: no renewal, and no release either
            with anyio.fail_after(BOUND_S):
                await waiter.entered.wait()
            assert holder.ended.is_set() is False
            # Were the dead worker only paused, its next renewal finds the slot taken: its call
            # is cancelled and falls back (K holds), rather than running as a third.
            await dying.renew()
            with anyio.fail_after(BOUND_S):
                await holder.ended.wait()
            assert holder.refused is not None
            assert holder.refused.reason == "admission_unavailable"
            with _check(redis_url) as check:
                assert check.zcard(SLOTS) == 1
            tg.cancel_scope.cancel()


async def test_redis_stopped_mid_wait_refuses_then_admits_again(
    redis_server: RedisServer, redis_url: str
) -> None:
    book = Book()
    async with AsyncExitStack() as stack:
        workers = [await _worker(stack, redis_url, 1, pause_s=0.2) for _ in range(3)]
        holder = Call(workers[0], "holder", book)
        waiters = [Call(workers[i], f"waiter{i}", book) for i in (1, 2)]
        async with anyio.create_task_group() as tg:
            for worker in workers:
                tg.start_soon(worker.run)
            tg.start_soon(holder.run)
            await holder.entered.wait()
            for call in waiters:
                tg.start_soon(call.run)
                await call.queued.wait()
            redis_server.stop()
            with anyio.fail_after(BOUND_S):
                for call in waiters:
                    await call.ended.wait()
            assert [call.refused and call.refused.reason for call in waiters] == [
                "admission_unavailable"
            ] * 2
            refused = Call(workers[1], "new", book)
            await refused.run()  # never a per-process count: refused at once
            assert refused.refused is not None
            assert refused.refused.reason == "admission_unavailable"
            assert not holder.ended.is_set()  # a running call runs on while Redis is away

            redis_server.start()  # empty, as after a crash
            with anyio.fail_after(BOUND_S):
                while holder.admission._held and not _holds(redis_url):
                    await anyio.sleep(0.05)
                    await workers[0].renew()
            assert not holder.ended.is_set()  # its renewal took its slot back
            # The workers admit again by themselves (a worker that failed a call a moment ago
            # refuses for its short pause, then asks Redis again).
            with anyio.fail_after(BOUND_S):
                while True:
                    again = Call(workers[2], "again", book)
                    tg.start_soon(again.run)
                    await again.settled.wait()
                    if again.refused is None:
                        break
                    await anyio.sleep(0.1)
            assert again.positions == [0]  # K = 1 still holds: the holder has its slot
            holder.leave.set()
            with anyio.fail_after(BOUND_S):
                await again.entered.wait()
            tg.cancel_scope.cancel()
        assert book.most == 1


async def test_a_running_call_whose_lease_lapses_while_redis_is_away_falls_back(
    redis_server: RedisServer, redis_url: str
) -> None:
    book = Book()
    async with AsyncExitStack() as stack:
        worker = await _worker(stack, redis_url, 1, lease_s=0.6, pause_s=0.2)
        holder = Call(worker, "holder", book)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            tg.start_soon(holder.run)
            await holder.entered.wait()
            await anyio.sleep(1.0)  # past a lease while Redis answers: its renewals keep it
            assert not holder.ended.is_set()
            redis_server.stop()
            # Counted nowhere once its lease has run out: it stops, as a new call is refused.
            with anyio.fail_after(BOUND_S):
                await holder.ended.wait()
            assert holder.refused is not None
            assert holder.refused.reason == "admission_unavailable"
            redis_server.start()
            with anyio.fail_after(BOUND_S):  # and calls are admitted again by themselves
                while True:
                    again = Call(worker, "again", book)
                    tg.start_soon(again.run)
                    await again.settled.wait()
                    if again.entered.is_set():
                        break
                    await anyio.sleep(0.1)
            again.leave.set()
            tg.cancel_scope.cancel()
        assert book.most == 1


async def test_an_idle_worker_reads_the_slots_anew_when_asked_and_counts_its_own_without_redis(
    redis_server: RedisServer, redis_url: str
) -> None:
    """Regression: crossroads_slots_in_use stayed at an idle worker's last reading (1 while
    nothing ran), and stayed there while Redis was away."""
    book = Book()
    async with AsyncExitStack() as stack:
        busy, idle = [await _worker(stack, redis_url, 2, pause_s=0.2) for _ in range(2)]
        holder = Call(busy, "holder", book)
        async with anyio.create_task_group() as tg:
            tg.start_soon(holder.run)
            await holder.entered.wait()
            seen = Call(idle, "seen", book)
            seen.leave.set()
            await seen.run()  # in and out: its release read the holder's slot
            assert (idle.in_use, idle.waiting) == (1, 0)
            holder.leave.set()
            await holder.ended.wait()
            assert idle.in_use == 1  # nothing since: the old reading stands
            before = idle.read_at
            await idle.refresh()
            assert (idle.in_use, idle.waiting) == (0, 0)
            assert idle.read_at > before

            mine = Call(idle, "mine", book)
            tg.start_soon(mine.run)
            await mine.entered.wait()
            redis_server.stop()
            await idle.refresh()
            # Nothing is admitted anywhere while Redis is away: the slot held here is all it knows.
            assert (idle.in_use, idle.waiting) == (1, 0)
            assert idle.refusing == "admission_unavailable"
            tg.cancel_scope.cancel()


async def test_an_idle_worker_notices_redis_go_and_come_back_by_itself(
    redis_server: RedisServer, redis_url: str
) -> None:
    """With no call to make it ask, its renewals still read Redis: whether model calls are
    refused (what the page's header says writes) is known at once on every worker."""
    async with AsyncExitStack() as stack:
        idle = await _worker(stack, redis_url, 2, lease_s=0.6, pause_s=0.2)
        async with anyio.create_task_group() as tg:
            tg.start_soon(idle.run)
            with anyio.fail_after(BOUND_S):
                while idle.read_at == 0:  # noqa: ASYNC110 (a reading, not an event)
                    await anyio.sleep(0.05)
            assert idle.refusing is None
            redis_server.stop()
            with anyio.fail_after(BOUND_S):
                while idle.refusing is None:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            assert idle.refusing == "admission_unavailable"
            redis_server.start()
            with anyio.fail_after(BOUND_S):
                while idle.refusing is not None:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            tg.cancel_scope.cancel()


def _holds(url: str) -> bool:
    with _check(url) as check:
        return bool(check.zcard(SLOTS))


async def test_the_learned_limit_is_one_value_for_the_deployment(redis_url: str) -> None:
    book = Book()
    async with AsyncExitStack() as stack:
        learner, other = [await _worker(stack, redis_url, 4, adaptive=True) for _ in range(2)]
        assert learner.limit.store.update(lambda value: 1) == (4, 1)
        shared = learner._shared_limit
        assert shared is not None
        await shared.flush()
        first, second = Call(other, "first", book), Call(other, "second", book)
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.run)
            await first.entered.wait()
            tg.start_soon(second.run)
            await second.queued.wait()
            assert second.positions == [0]  # the other worker admits one: it learned too
            assert other.slots == 1
            # Two workers raising it at once both count: each applies to what Redis holds.
            learner.limit.store.update(lambda value: value + 1)
            other.limit.store.update(lambda value: value + 1)
            await shared.flush()
            assert other._shared_limit is not None
            await other._shared_limit.flush()
            with _check(redis_url) as check:
                assert check.get("crossroads:admission:limit") == "3"
            with anyio.fail_after(BOUND_S):
                await second.entered.wait()
            tg.cancel_scope.cancel()


@pytest.fixture
def distributed(postgres_url: str, redis_url: str, tmp_path: Path) -> Database:
    return Database("postgres", postgres_url, tmp_path / "data", redis_url)


async def test_with_redis_gone_a_step_falls_back_with_an_honest_note_then_calls_resume(
    distributed: Database, redis_server: RedisServer
) -> None:
    with serve(FakeUpstream()) as upstream_url:
        settings = distributed.settings(
            llm={"base_url": upstream_url, "model": "fake-model"},
            journey={"questions_per_session": 1},
        )
        with serve_app(create_app(settings)) as url:
            async with Visitor(url) as visitor:
                redis_server.stop()
                refused = await visitor.start()
                assert (await visitor.stream(refused, 0)).names()[-1] == "done"
                step = stored.step(settings, refused, 0)
                assert step is not None and step.reason == "admission_unavailable"
                assert step.note is not None
                assert step.note.startswith(CAUSES["admission_unavailable"])

                redis_server.start()  # empty, as after a crash
                assert (await visitor.http.get("/readyz")).json()["redis"] == "ok"
                admitted = await visitor.start()
                assert (await visitor.stream(admitted, 0)).names()[-1] == "done"
                step = stored.step(settings, admitted, 0)
                assert step is not None and step.reason is None and step.source == "model"


async def test_a_failed_renewal_does_not_end_the_workers_tasks(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with AsyncExitStack() as stack:
        worker = await _worker(stack, redis_url, 1, lease_s=0.3)
        renewed = anyio.Event()
        failures = [RuntimeError("an unforeseen answer")]
        real_renew = worker.renew

        async def renew() -> None:
            if failures:
                raise failures.pop()
            await real_renew()
            renewed.set()

        monkeypatch.setattr(worker, "renew", renew)
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            with anyio.fail_after(BOUND_S):
                await renewed.wait()  # the task lived on past the failure
            assert not failures
            tg.cancel_scope.cancel()
