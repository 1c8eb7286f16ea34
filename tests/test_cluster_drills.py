"""Process drills of the distributed backend (issue 12 section 3): a step's writer killed
(kill -9), paused past its lease (SIGSTOP, then SIGCONT), stopped (SIGTERM), and an admission
slot's holder killed, each with three worker processes on real Redis and PostgreSQL. Every drill
ends with the exact text in the stream, in `done` and in the database, and no stream silent
longer than a heartbeat and a second."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
import httpx
import pytest

from server.broker_stream_redis import StepKeys
from server.cluster import WorkerProcess
from tests import sse, stored
from tests.cluster import ClusterFactory, RunningCluster, done_text
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

# A scenario of 80 words at 20 a second: about four seconds of streaming, so that a worker can
# be killed, paused or stopped while it writes. No trailing space: the stored text is exactly
# the streamed text.
CHUNKS = ["w0", *(f" w{i}" for i in range(1, 80))]
SLOW = {"chunks": CHUNKS, "chunk_delay_s": 0.05}
EXPECTED = "".join(CHUNKS)
HEARTBEAT_S = 1.0  # the harness's stream.heartbeat_s
LEASE_S = 3.0  # the harness's scale.lease_s
LIMIT_S = 60.0  # a backstop proving things end, never a speed bound


@asynccontextmanager
async def client_of(worker: WorkerProcess, visitor: Visitor) -> AsyncIterator[httpx.AsyncClient]:
    """The visitor's browser talking to one worker directly (one secret key: its cookie works
    on every worker)."""
    async with httpx.AsyncClient(
        base_url=worker.url, cookies=visitor.http.cookies, timeout=LIMIT_S
    ) as client:
        yield client


async def read(
    client: httpx.AsyncClient, url: str, stream: sse.Stream, *, last_event_id: str = ""
) -> None:
    """Read a stream into `stream` as its events come (the test watches it meanwhile), to its
    end: `done`, or the worker going away."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    stream.started = time.monotonic()
    try:
        async with client.stream("GET", url, headers=headers) as response:
            stream.status = response.status_code
            await sse.parse(response.aiter_lines(), stream)
    except httpx.HTTPError:
        pass  # the worker was killed under it: what was read is kept
    finally:
        stream.ended = time.monotonic()


async def until(predicate: Callable[[], bool], timeout_s: float = LIMIT_S) -> None:
    """Poll what a background reader fills in; fail_after bounds it."""
    with anyio.fail_after(timeout_s):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.02)


def chunks(stream: sse.Stream) -> int:
    return len(stream.of("chunk"))


def version_of(event_id: str | None) -> int:
    assert event_id is not None
    return int(event_id.split(".")[0])


def last_id(stream: sse.Stream) -> str:
    return [e.id for e in stream.events if e.id][-1]


def first_text_after(stream: sse.Stream, moment: float, *, above: int) -> sse.Received:
    """The first text event after `moment` of a version above `above`."""
    return next(
        e for e in stream.events if e.at > moment and e.id is not None and version_of(e.id) > above
    )


def ends_exactly(cluster: RunningCluster, sid: str, stream: sse.Stream, text: str) -> int:
    """The row's end: the whole text in the stream (as the page shows it), in `done` and in the
    database, which holds the step finished; the stored version."""
    assert stream.status == 200 and stream.names()[-1] == "done", stream.names()
    assert text == EXPECTED
    assert done_text(stream) == EXPECTED
    step = stored.step(cluster.settings, sid, 0)
    assert step is not None and (step.status, step.text) == ("done", EXPECTED)
    return step.version


def never_silent(*streams: sse.Stream) -> None:
    for stream in streams:
        assert stream.largest_gap() <= HEARTBEAT_S + 1.0, stream.largest_gap()


async def test_an_owner_killed_mid_stream_is_taken_over_and_every_viewer_gets_it_all(
    cluster: RunningCluster,
) -> None:
    cluster.upstream.script(default=SLOW)
    a, b, c = cluster.workers
    async with Visitor(a.url) as visitor:
        sid = await visitor.start()  # worker A writes the scenario
        url = f"/s/{sid}/steps/0/stream"
        seen = sse.Stream(status=0)  # a viewer on B, which only follows A
        on_a = sse.Stream(status=0)  # a viewer on A, cut off with it
        resumed = sse.Stream(status=0)  # which reconnects to C with its Last-Event-ID
        with anyio.fail_after(LIMIT_S):
            async with (
                client_of(b, visitor) as on_b,
                client_of(c, visitor) as on_c,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(read, on_b, url, seen)
                tg.start_soon(read, visitor.http, url, on_a)
                await until(lambda: chunks(seen) >= 3 and chunks(on_a) >= 3)
                old = version_of(last_id(seen))
                killed_at = time.monotonic()
                await anyio.to_thread.run_sync(a.kill)  # kill -9: nothing handed back
                await until(lambda: on_a.ended > 0)
                await read(on_c, url, resumed, last_event_id=last_id(on_a))
    assert on_a.names()[-1] != "done"
    # B or C finds A's lease lapsed and writes the step again under a new version: its
    # viewers get that version's snapshot, then the whole text and done.
    taken = first_text_after(seen, killed_at, above=old)
    assert taken.event == "snapshot"
    assert taken.at - killed_at <= LEASE_S + 2.0
    version = ends_exactly(cluster, sid, seen, seen.text())
    assert version >= version_of(taken.id) > old
    ends_exactly(cluster, sid, resumed, resumed.text(prefix=on_a.text()))
    never_silent(seen, on_a, resumed)


def redis_state(cluster: RunningCluster, sid: str, versions: range) -> dict[str, object]:
    """What Redis holds of step 0: its header and every version's stream."""
    keys = StepKeys((sid, 0))
    with cluster.redis.client() as client:
        state: dict[str, object] = {"header": client.hgetall(keys.header)}
        for version in versions:
            state[f"v{version}"] = client.xrange(keys.stream(version))
    return state


def leased(cluster: RunningCluster, sid: str) -> bool:
    with cluster.redis.client() as client:
        return bool(client.exists(StepKeys((sid, 0)).lease))


async def test_an_owner_paused_past_its_lease_changes_nothing_when_it_wakes(
    cluster: RunningCluster,
) -> None:
    cluster.upstream.script(default=SLOW)
    a, b, _ = cluster.workers
    async with Visitor(a.url) as visitor:
        sid = await visitor.start()
        url = f"/s/{sid}/steps/0/stream"
        seen = sse.Stream(status=0)
        with anyio.fail_after(LIMIT_S):
            async with client_of(b, visitor) as on_b, anyio.create_task_group() as tg:
                tg.start_soon(read, on_b, url, seen)
                await until(lambda: chunks(seen) >= 3)
                old = version_of(last_id(seen))
                paused_at = time.monotonic()
                a.pause()  # SIGSTOP: it holds its lease, its upstream and its slot, frozen
        try:
            # B took the step over past A's lease and wrote all of it meanwhile.
            taken = first_text_after(seen, paused_at, above=old)
            assert taken.at - paused_at <= LEASE_S + 2.0
            version = ends_exactly(cluster, sid, seen, seen.text())
            await until(lambda: not leased(cluster, sid))  # B published its end and let go
            before = (
                stored.step(cluster.settings, sid, 0),
                redis_state(cluster, sid, range(1, version + 2)),
            )
        finally:
            a.resume()  # SIGCONT
        # A wakes into a step that is no longer its own: it notices at its first renewal or its
        # first frame (both fenced), and its model call, its fallback and its end are refused.
        await until(lambda: "Generation lease lost" in a.log.read_text(), LEASE_S + 5.0)
        await anyio.sleep(LEASE_S)  # anything late would land by now
        after = (
            stored.step(cluster.settings, sid, 0),
            redis_state(cluster, sid, range(1, version + 2)),
        )
        assert after == before
        # The page still shows the step as B wrote it, on every worker.
        for worker in cluster.workers:
            async with client_of(worker, visitor) as client:
                again = sse.Stream(status=0)
                await read(client, url, again)
            assert done_text(again) == EXPECTED
    never_silent(seen)


async def test_a_worker_stopped_with_live_streams_hands_them_to_the_others_at_once(
    start_cluster: ClusterFactory,
) -> None:
    # A long lease: a resumption well within it shows the lease was handed back, not lapsed
    # (it would lapse two thirds of a lease after the last renewal at the earliest).
    lease_s = 15.0
    cluster = start_cluster(settings={"scale": {"lease_s": lease_s}})
    cluster.upstream.script(default=SLOW)
    a, b, c = cluster.workers
    async with Visitor(a.url) as visitor:
        sid = await visitor.start()
        url = f"/s/{sid}/steps/0/stream"
        on_a = sse.Stream(status=0)  # a viewer of the stopping worker
        elsewhere = sse.Stream(status=0)  # and one of another worker's mirror
        resumed = sse.Stream(status=0)
        with anyio.fail_after(LIMIT_S):
            async with (
                client_of(b, visitor) as on_b,
                client_of(c, visitor) as on_c,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(read, visitor.http, url, on_a)
                tg.start_soon(read, on_c, url, elsewhere)
                await until(lambda: chunks(on_a) >= 3 and chunks(elsewhere) >= 3)
                old = version_of(last_id(on_a))
                stopped_at = time.monotonic()
                a.terminate()  # SIGTERM
                await until(lambda: on_a.ended > 0)  # told to go, as a browser is
                # The browser reconnects with its Last-Event-ID; round robin takes it to B.
                await read(on_b, url, resumed, last_event_id=last_id(on_a))
            code = await anyio.to_thread.run_sync(a.wait)
    # Gone after a graceful shutdown (uvicorn ends by raising the signal it caught again).
    assert code in (0, -15) and "Application shutdown complete." in a.log.read_text()
    assert on_a.names()[-1] != "done"  # it was cut short, not finished
    # Resumed at once where it stopped, then B (its lease handed back, not lapsed) writes the
    # step again under a new version: the browser gets that version's snapshot.
    first = next(e for e in resumed.events if e.id is not None)
    taken = first_text_after(resumed, stopped_at, above=old)
    assert taken.event == "snapshot"
    assert first.at <= taken.at and taken.at - stopped_at < lease_s / 2
    ends_exactly(cluster, sid, resumed, resumed.text(prefix=on_a.text()))
    ends_exactly(cluster, sid, elsewhere, elsewhere.text())
    never_silent(on_a, resumed, elsewhere)


async def test_a_killed_slot_holders_slot_goes_to_a_waiter_on_another_worker(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(
        settings={"limits": {"max_concurrent_ai_requests": 1, "queue_timeout_s": 30.0}}
    )
    # The first model call holds its stream open after three chunks: its slot stays taken.
    cluster.upstream.script(default=SLOW, queue=[{**SLOW, "hold_after": 3}])
    a, b, _ = cluster.workers
    async with Visitor(a.url) as holder, Visitor(b.url) as waiter:
        held = await holder.start()  # A takes the one slot
        holding = sse.Stream(status=0)
        waiting = sse.Stream(status=0)
        with anyio.fail_after(LIMIT_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(read, holder.http, f"/s/{held}/steps/0/stream", holding)
                await until(lambda: chunks(holding) >= 3)
                sid = await waiter.start()  # B's call waits for it
                tg.start_soon(read, waiter.http, f"/s/{sid}/steps/0/stream", waiting)
                await until(lambda: any("queued" in e.data for e in waiting.of("status")))
                killed_at = time.monotonic()
                await anyio.to_thread.run_sync(a.kill)
    # The slot's lease lapses and the waiter on B is let in: the model writes its step.
    writing = next(e for e in waiting.of("status") if e.at > killed_at and e.data == "writing")
    assert writing.at - killed_at <= LEASE_S + 2.0
    ends_exactly(cluster, sid, waiting, waiting.text())
    step = stored.step(cluster.settings, sid, 0)
    assert step is not None and step.source == "model"
    never_silent(waiting)
