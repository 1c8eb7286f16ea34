"""What holds for the whole deployment, as real processes (three workers behind nginx
round-robin, Redis, PostgreSQL, the fake upstream): one admission budget and one line, one rate
limit per client, a stop or a delete pressed on any worker, and Redis or PostgreSQL stopped
mid-run and started again.

Every row ends with the exact text in the stream, in `done` and in the database, and no stream
is silent for longer than a heartbeat and a second."""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import anyio
import httpx
import pytest
from playwright.sync_api import BrowserContext, expect

from server.cluster_servers import WORKER_HEADER
from tests import sse, stored
from tests.chromium import assert_no_violations, start
from tests.cluster import ClusterFactory, RunningCluster, done_text
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

HEARTBEAT_S = 1.0
LIMIT_S = 90  # a backstop proving things end, never a speed bound
WAIT_MS = 30_000  # the same for the browser: an answer refused waits out a 5 s acquire
RECONNECTS = 60  # a page connects again, but not endlessly
RETRY_S = 0.5  # how long the page waits before it connects again
QUEUED = re.compile(r"queued: (?:(\d+) ahead of you|you are next)")


def words(n: int) -> list[str]:
    """A model's scenario of n words (no trailing space: the stored text is the streamed one)."""
    return ["w0", *(f" w{i}" for i in range(1, n))]


class Viewer:
    """One browser's view of a step's stream, read to its end as the page reads it: each
    connection (`connections`) recorded apart, the page's text across them (`stream`), the
    worker that served the last one, and each queue place it was told, in order."""

    def __init__(self, sid: str) -> None:
        self.sid = sid
        self.connections: list[sse.Stream] = []
        self.worker = ""
        self.queued = anyio.Event()
        self.ended = anyio.Event()

    @property
    def stream(self) -> sse.Stream:
        """Every connection's events in order, as one stream (the page's text is its text)."""
        merged = sse.Stream(status=self.connections[-1].status if self.connections else 0)
        for connection in self.connections:
            merged.events += connection.events
            merged.comments += connection.comments
        return merged

    @property
    def places(self) -> list[int]:
        found = []
        for event in self.stream.of("status"):
            match = QUEUED.match(event.data)
            if match:
                found.append(int(match.group(1) or 0))
        return found

    @property
    def largest_gap(self) -> float:
        """The longest silence within any connection that was open."""
        return max(c.largest_gap() for c in self.connections if c.status == 200)

    async def read(self, client: httpx.AsyncClient, n: int = 0) -> None:
        """As the page does: a connection that ends without `done` (or is refused) connects
        again from its Last-Event-ID after a moment; a `done` that is the live step again
        (its writer ended without finishing it) connects again from the start."""

        def seen(stream: sse.Stream) -> bool:
            if any(QUEUED.match(event.data) for event in stream.of("status")):
                self.queued.set()
            return False

        try:
            await self._read(client, n, seen)
        finally:
            self.ended.set()

    async def _read(
        self, client: httpx.AsyncClient, n: int, seen: Callable[[sse.Stream], bool]
    ) -> None:
        last_id = None
        for _ in range(RECONNECTS):
            connection = sse.Stream(status=0, started=time.monotonic())
            self.connections.append(connection)
            headers = {"Last-Event-ID": last_id} if last_id else {}
            url = f"/s/{self.sid}/steps/{n}/stream"
            try:
                async with client.stream("GET", url, headers=headers) as response:
                    connection.status = response.status_code
                    self.worker = response.headers.get(WORKER_HEADER, "")
                    if response.status_code == 200:
                        await sse.parse(response.aiter_lines(), connection, until=seen)
            except httpx.TransportError:
                pass
            connection.ended = time.monotonic()
            events = connection.events
            if events and events[-1].event == "done":
                if not re.search(
                    rf'<section id="step-{n}" class="[^"]*\bis-live\b', events[-1].data
                ):
                    return
                last_id = None
            else:
                ids = [e.id for e in self.stream.events if e.id]
                last_id = ids[-1] if ids else None
                await anyio.sleep(RETRY_S)
        summary = [(c.status, c.names()[-3:]) for c in self.connections]
        raise AssertionError(f"no end after {RECONNECTS} connections: {summary}")


STOPPED = re.compile(r'<div class="prose stopped-text">(.*?)</div>', re.S)


def stopped_text(stream: sse.Stream) -> str:
    """The kept text in a stopped step's `done` element, as a reader sees it."""
    found = STOPPED.search(stream.of("done")[-1].data)
    assert found is not None, stream.of("done")[-1].data
    paragraphs = re.split(r"</p>\s*<p>", found.group(1).strip())
    return "\n\n".join(html.unescape(re.sub(r"<[^>]+>", "", p)).strip() for p in paragraphs)


def shown_text(viewer: Viewer, n: int) -> str:
    """The live text the page showed last: from the events since the page last put the live
    step in again (a `done` that was still live), a snapshot replacing, a chunk appending."""
    events = viewer.stream.events
    live = re.compile(rf'<section id="step-{n}" class="[^"]*\bis-live\b')
    starts = [i + 1 for i, e in enumerate(events) if e.event == "done" and live.search(e.data)]
    return sse.Stream(status=200, events=events[starts[-1] if starts else 0 :]).text()


def exact_everywhere(
    cluster: RunningCluster, viewer: Viewer, n: int = 0, *, shown: str = "whole"
) -> str:
    """The stream ended with `done`, never silent past a heartbeat and a second; the `done`
    element shows exactly the database's text, and a fallback's carries its note. The live
    text shown before it was the whole text (`shown="whole"`), or a beginning of it ("prefix":
    the page connected as the step ended and got `done` at once), or anything ("replaced": the
    text could not be relayed from its writer, Redis being away; `done` then takes its place).
    Returns the stored step's reason ("": the model's text)."""
    stream = viewer.stream
    assert stream.status == 200 and stream.names()[-1] == "done", stream.names()
    assert viewer.largest_gap <= HEARTBEAT_S + 1.0, viewer.largest_gap
    step = stored.step(cluster.settings, viewer.sid, n)
    assert step is not None and step.status == "done"
    assert done_text(stream) == step.text
    live = shown_text(viewer, n)
    if shown == "whole":
        assert live == step.text
    elif shown == "prefix":
        assert step.text.startswith(live), (live, step.text)
    if step.reason is not None:
        assert step.note and html.escape(step.note) in stream.of("done")[-1].data
    return step.reason or ""


async def test_two_model_calls_at_most_for_the_deployment_in_one_global_line(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(
        settings={
            "limits": {
                "max_concurrent_ai_requests": 2,
                "adaptive_concurrency": False,  # K is 2: nothing learned lowers it
                # Past a wait this long a call falls back. Each call streams at least 2 s (40
                # chunks 0.05 s apart), so the last pair of the ten waiting cannot get in before
                # 9.85 s after the release: some surely fall back, however fast the machine.
                "queue_timeout_s": 9.0,
                "chunk_timeout_s": 30.0,
            }
        }
    )
    text = "".join(words(40))
    slow = {"chunks": words(40), "chunk_delay_s": 0.05}
    # The first calls are held mid-stream until every other session is in the line (once
    # released, the script holds no more).
    cluster.upstream.script(default={**slow, "hold_after": 3})
    async with Visitor(cluster.url) as visitor:
        sids = [await visitor.start() for _ in range(12)]  # round robin: 4 per worker
        viewers = [Viewer(sid) for sid in sids]
        with anyio.fail_after(LIMIT_S):
            async with anyio.create_task_group() as tg:
                for viewer in viewers:
                    tg.start_soon(viewer.read, visitor.http)
                while sum(viewer.queued.is_set() for viewer in viewers) < 10:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
                # The line is one for the deployment: ten waiting, each told its own place.
                now = sorted(viewer.places[-1] for viewer in viewers if viewer.places)
                assert now == list(range(10)), now
                assert cluster.upstream.state()["open_streams"] == 2
                cluster.upstream.release()
    assert len({viewer.worker for viewer in viewers}) == 3  # served by every worker
    state = cluster.upstream.state()
    assert state["max_open_streams"] == 2, state
    reasons = [exact_everywhere(cluster, viewer) for viewer in viewers]
    for viewer in viewers:
        assert viewer.places == sorted(viewer.places, reverse=True), viewer.places
    assert set(reasons) <= {"", "queue_timeout"}, reasons
    assert reasons.count("") >= 2
    # Those past the queue timeout fell back; the others got the model's text.
    assert "queue_timeout" in reasons, reasons
    for viewer, reason in zip(viewers, reasons, strict=True):
        if not reason:
            assert viewer.stream.text() == text


async def test_a_clients_limit_holds_across_workers_not_once_per_worker(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(settings={"limits": {"sessions_per_minute_per_client": 4}})
    cluster.upstream.script(default={"chunks": words(20)})
    async with Visitor(cluster.url) as visitor:
        await visitor.home()
        answered: list[httpx.Response] = []
        for _ in range(9):  # round robin: three to each worker
            answered.append(
                await visitor.http.post(
                    "/sessions", data={"category": "finance", "csrf_token": visitor.token}
                )
            )
        assert [r.status_code for r in answered] == [303] * 4 + [429] * 5
        assert len({r.headers[WORKER_HEADER] for r in answered}) == 3
        refused = answered[-1]
        assert "Slow down a little" in refused.text and int(refused.headers["retry-after"]) > 0
        viewers = [Viewer(r.headers["location"].removeprefix("/s/")) for r in answered[:4]]
        with anyio.fail_after(LIMIT_S):
            async with anyio.create_task_group() as tg:
                for viewer in viewers:
                    tg.start_soon(viewer.read, visitor.http)
    assert [exact_everywhere(cluster, viewer) for viewer in viewers] == [""] * 4
    assert stored.counts(cluster.settings)["sessions"] == 4


async def upstream_idle(cluster: RunningCluster) -> None:
    """Until the upstream has no stream open: the app closed its model calls."""
    while cluster.upstream.state()["open_streams"]:  # noqa: ASYNC110 - a process to poll
        await anyio.sleep(0.02)


def redis_keys_of(cluster: RunningCluster, sid: str) -> list[str]:
    with cluster.redis.client() as client:
        return [key for key in client.scan_iter(match="*") if sid in key]


async def test_a_stop_on_one_worker_and_a_delete_on_another_end_the_owners_generation(
    start_cluster: ClusterFactory,
) -> None:
    # Leases renewed only every 10 s: a stop that ends the owner's call within a second came
    # through the announcement, not through the owner's own reading of the store.
    cluster = start_cluster(
        settings={"scale": {"lease_s": 30.0}, "journey": {"questions_per_session": 1}}
    )
    a, b, c = cluster.workers
    async with Visitor(a.url) as visitor:
        # A journey whose scenario and question the model wrote (so they are cached)...
        cluster.upstream.script(default={"chunks": words(20)})
        deleted = await visitor.start()
        with anyio.fail_after(LIMIT_S):
            assert (await visitor.stream(deleted, 0)).names()[-1] == "done"
            assert (await visitor.stream(deleted, 1)).names()[-1] == "done"
        # ... and from now on the model writes for as long as nobody stops it: a scenario, and
        # that journey's report, both written on worker A.
        cluster.upstream.script(
            default={"chunks": words(20), "chunk_delay_s": 0.05, "endless": True}
        )
        stopped = await visitor.start()
        assert (await visitor.answer(deleted, 1, "I would ask first.")).status_code == 303
        async with (
            httpx.AsyncClient(base_url=b.url, cookies=visitor.http.cookies, timeout=30) as on_b,
            httpx.AsyncClient(base_url=c.url, cookies=visitor.http.cookies, timeout=30) as on_c,
        ):
            watching = Viewer(stopped)
            report = Viewer(deleted)
            async with anyio.create_task_group() as tg:
                tg.start_soon(watching.read, on_c)  # a viewer on C
                tg.start_soon(report.read, on_b, 2)  # and one on B
                with anyio.fail_after(LIMIT_S):
                    while len(watching.stream.of("chunk")) < 3 or not report.stream.of("chunk"):  # noqa: ASYNC110
                        await anyio.sleep(0.02)
                assert cluster.upstream.state()["open_streams"] == 2

                response = await on_b.post(
                    f"/s/{stopped}/steps/0/stop", data={"csrf_token": visitor.token}
                )
                assert response.status_code == 303
                with anyio.fail_after(1.0):  # the owner on A ends it (the row's bound)
                    await watching.ended.wait()
                    while cluster.upstream.state()["open_streams"] > 1:  # noqa: ASYNC110
                        await anyio.sleep(0.02)

                cached = stored.cached_for(cluster.settings, deleted)
                assert cached >= 2  # its model-written scenario and question
                response = await on_c.post(
                    f"/s/{deleted}/delete", data={"csrf_token": visitor.token}
                )
                assert response.status_code == 303
                with anyio.fail_after(1.0):
                    await upstream_idle(cluster)
                with anyio.fail_after(LIMIT_S):
                    await report.ended.wait()
    step = stored.step(cluster.settings, stopped, 0)
    assert step is not None and step.status == "stopped" and step.text
    stream = watching.stream
    assert stream.names()[-1] == "done" and watching.largest_gap <= HEARTBEAT_S + 1.0
    assert stopped_text(stream) == step.text
    assert stream.text() == step.text  # "Stop writing" keeps what was shown, exactly
    # The deleted journey: its viewer's step leaves the page, and nothing of it is kept.
    assert report.stream.names()[-1] == "done" and report.largest_gap <= HEARTBEAT_S + 1.0
    assert stored.stored(cluster.settings, deleted) == {"sessions": [], "steps": [], "answers": []}
    assert stored.cached_for(cluster.settings, deleted) == 0
    assert redis_keys_of(cluster, deleted) == []


def logged(cluster: RunningCluster, *levels: str) -> list[dict[str, object]]:
    """The workers' JSON log lines at these levels."""
    found = []
    for worker in cluster.workers:
        for line in worker.log.read_text().splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("level") in levels:
                    found.append(record)
    return found


async def test_with_redis_stopped_steps_fall_back_pages_load_and_calls_resume(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster(settings={"journey": {"questions_per_session": 1}})
    fast = {"chunks": words(20)}
    cluster.upstream.script(default=fast)
    async with Visitor(cluster.url) as visitor:
        finished = await visitor.start()
        assert (await visitor.finish(finished, 1)).names()[-1] == "done"
        # A step the model is writing (for 20 s) when Redis goes away.
        cluster.upstream.script(default={"chunks": words(400), "chunk_delay_s": 0.05})
        running = Viewer(await visitor.start())
        pages: list[httpx.Response] = []
        with anyio.fail_after(LIMIT_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(running.read, visitor.http)
                while len(running.stream.of("chunk")) < 3:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
                await anyio.to_thread.run_sync(cluster.redis.stop)
                # New steps, on every worker: their model calls are refused at once.
                fresh = [Viewer(await visitor.start()) for _ in range(3)]
                for viewer in fresh:
                    tg.start_soon(viewer.read, visitor.http)
                # Pages and the finished journey, from every worker.
                for path in ["/", f"/s/{finished}", f"/s/{finished}/report"] * 3:
                    pages.append(await visitor.http.get(path))
        assert [page.status_code for page in pages] == [200] * 9
        assert len({page.headers[WORKER_HEADER] for page in pages}) == 3
        # The running step fell back once its model slot's lease lapsed, with a note; its
        # viewer got the fallback, from whichever worker it was reading.
        assert exact_everywhere(cluster, running, shown="replaced") == "admission_unavailable"
        for viewer in fresh:
            assert exact_everywhere(cluster, viewer, shown="prefix") == "admission_unavailable"

        await anyio.to_thread.run_sync(cluster.redis.start)  # empty, as after a crash
        for worker in cluster.workers:
            async with httpx.AsyncClient(base_url=worker.url) as direct:
                ready = (await direct.get("/readyz")).json()
            assert ready["redis"] == "ok" and ready["status"] == "ok", ready
        cluster.upstream.script(default=fast)
        again = [Viewer(await visitor.start()) for _ in range(3)]  # one on each worker
        with anyio.fail_after(LIMIT_S):
            async with anyio.create_task_group() as tg:
                for viewer in again:
                    tg.start_soon(viewer.read, visitor.http)
        # Model calls resumed by themselves, on every worker.
        assert [exact_everywhere(cluster, viewer) for viewer in again] == [""] * 3
    print("LOGGED", logged(cluster, "error", "critical"), len(logged(cluster, "info")))
    assert logged(cluster, "error", "critical") == []


async def test_with_postgresql_stopped_a_running_step_is_written_once_it_is_back(
    start_cluster: ClusterFactory,
) -> None:
    cluster = start_cluster()
    cluster.upstream.script(default={"chunks": words(60), "chunk_delay_s": 0.05})
    pids = [worker.pid for worker in cluster.workers]
    async with Visitor(cluster.url) as visitor:
        running = Viewer(await visitor.start())
        with anyio.fail_after(LIMIT_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(running.read, visitor.http)
                while len(running.stream.of("chunk")) < 3:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
                await anyio.to_thread.run_sync(cluster.postgres.stop)
                readiness = await anyio.to_thread.run_sync(ready_everywhere, cluster)
                assert readiness == [503] * 3
                # The model sends its whole text, which its writer cannot store: the stream
                # ends without `done`, and the page connects again (refused meanwhile).
                while len(running.connections) < 2:  # noqa: ASYNC110
                    await anyio.sleep(0.1)
                await anyio.to_thread.run_sync(cluster.postgres.start)
        # The page connected again and got the step, written again once the database was back.
        assert exact_everywhere(cluster, running) == ""
        assert running.stream.text() != ""
    assert [worker.pid for worker in cluster.workers] == pids  # no restart
    # Honest warnings, no unhandled error (each 503 is logged as "Database unavailable").
    errors = logged(cluster, "error", "critical")
    assert {record["event"] for record in errors} <= {"Database unavailable"}, errors


def ready_everywhere(cluster: RunningCluster) -> list[int]:
    """Each worker's /readyz status, asked directly (at once: each may wait for its database)."""
    with ThreadPoolExecutor(len(cluster.workers)) as pool:
        asked = pool.map(lambda w: httpx.get(f"{w.url}/readyz", timeout=10), cluster.workers)
        return [response.status_code for response in asked]


def plain(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.browser
def test_with_postgresql_stopped_an_answer_gets_the_503_page_and_stays_in_the_browser(
    start_cluster: ClusterFactory, context: BrowserContext
) -> None:
    cluster = start_cluster(settings={"journey": {"questions_per_session": 1}})
    cluster.upstream.script(default={"chunks": words(20)})
    pids = [worker.pid for worker in cluster.workers]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    sid = start(page, cluster.url, "Money")
    step = page.locator("#step-1.is-done")
    expect(step.locator("textarea")).to_be_visible(timeout=WAIT_MS)
    for n in (0, 1):  # what the page shows is what is stored
        shown = plain(page.locator(f"#step-{n}-text").inner_text())
        written = stored.step(cluster.settings, sid, n)
        assert written is not None and shown == plain(written.text)

    cluster.postgres.stop()
    assert ready_everywhere(cluster) == [503] * 3
    typed = "I would wait a year, because the timing matters more than the money."
    step.locator("textarea").fill(typed)
    step.get_by_role("button", name="Send answer").click()
    # The 503 page's words in the form's error slot; the answer is still in the browser.
    expect(page.locator("#error-1")).to_contain_text("was not saved", timeout=WAIT_MS)
    expect(page.locator("#answer-1")).to_have_value(typed)
    expect(step.get_by_role("button", name="Send answer")).to_be_enabled()

    cluster.postgres.start()
    deadline = time.monotonic() + LIMIT_S
    while ready_everywhere(cluster) != [200] * 3:  # no restart: the workers reconnect
        assert time.monotonic() < deadline, ready_everywhere(cluster)
        time.sleep(0.2)
    # Nothing was acknowledged, and nothing was stored: it is all still in the browser.
    assert stored.stored(cluster.settings, sid)["answers"] == []
    step.get_by_role("button", name="Send answer").click()
    expect(page.locator("#step-1 .answer blockquote")).to_have_text(typed, timeout=WAIT_MS)
    expect(page.locator("#step-2.is-done")).to_be_visible(timeout=WAIT_MS)
    assert stored.stored(cluster.settings, sid)["answers"] == [(1, typed)]
    report = stored.step(cluster.settings, sid, 2)
    assert report is not None and report.status == "done"
    assert [worker.pid for worker in cluster.workers] == pids
    assert_no_violations(page)
    assert errors == []
