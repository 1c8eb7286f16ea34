"""Several workers on one machine: `run.py` with server.workers = 2 on the distributed backend,
as real processes on real PostgreSQL and Redis. Which worker answered is read from /readyz; a
client with one kept-alive connection stays with the worker that accepted it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import anyio
import httpx
import psutil

from server.logs import JsonFormatter
from tests.conftest import Upstream
from tests.fake_upstream import Script
from tests.scrape import sample, scrape, value
from tests.servers import clean_env, free_port
from tests.visitor import Visitor

ROOT = Path(__file__).resolve().parent.parent
START_S = 60.0  # generous: two workers import and start the app on a busy machine
T = TypeVar("T")


@dataclass
class Supervised:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    seen: set[int] = field(default_factory=set)  # every worker ever seen, for the clean-up

    def workers(self) -> set[int]:
        """The supervisor's worker processes (its children that run the app)."""
        try:
            children = psutil.Process(self.proc.pid).children()
        except psutil.NoSuchProcess:
            return set()
        found = {child.pid for child in children if _app(child)}
        self.seen |= found
        return found

    def started(self) -> set[int]:
        """The workers that logged the end of their start-up (their lifespan ran)."""
        return self.logged("Application startup complete")

    def logged(self, event: str) -> set[int]:
        return {
            int(str(line["worker"]).rpartition(":")[2])
            for line in self.lines()
            if str(line["event"]).startswith(event)
        }

    def lines(self) -> list[dict[str, object]]:
        return [
            json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")
        ]


def _app(child: psutil.Process) -> bool:
    try:
        return "spawn_main" in " ".join(child.cmdline())
    except psutil.NoSuchProcess:
        return False


def eventually(what: str, check: Callable[[], T | None], timeout: float = START_S) -> T:
    """Poll `check` until it returns something true; a bound that proves it ends, not a speed."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.1)


def answering(url: str) -> bool | None:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200 or None
    except httpx.TransportError:
        return None


@contextmanager
def supervised(
    tmp_path: Path, postgres_url: str, redis_url: str, **settings: str
) -> Iterator[Supervised]:
    port = free_port()
    env = clean_env(
        **settings,
        CROSSROADS_SERVER__WORKERS="2",
        CROSSROADS_SERVER__GRACEFUL_SHUTDOWN_S="2",
        CROSSROADS_SCALE__BACKEND="distributed",
        CROSSROADS_SCALE__DATABASE_URL=postgres_url,
        CROSSROADS_SCALE__REDIS_URL=redis_url,
        CROSSROADS_SECRET_KEY="shared-by-every-worker",
        CROSSROADS_STORAGE__DATA_DIR=str(tmp_path / "data"),
    )
    log = tmp_path / "stderr.log"
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "run.py", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,  # its own process group, as in a terminal
        )
    running = Supervised(proc, f"http://127.0.0.1:{port}", log)
    try:
        eventually("run.py answers", lambda: proc.poll() is None and answering(running.url))
        eventually("two workers run", lambda: len(running.workers()) == 2)
        eventually("both workers started", lambda: running.started() == running.workers())
        yield running
    finally:
        # Whatever the test left running (it failed before its own signal): nothing outlives it.
        running.workers()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in running.seen:
            with contextlib.suppress(psutil.NoSuchProcess):
                if _app(psutil.Process(pid)):
                    os.kill(pid, signal.SIGKILL)


def _children(pid: int) -> list[int]:
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def worker_of(client: httpx.Client) -> str:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    worker: str = response.json()["worker"]
    return worker


def one_client_per_worker(stack: ExitStack, url: str) -> dict[str, httpx.Client]:
    """New connections until each of the two workers holds one (the kernel hands each new
    connection to whichever worker accepts first)."""
    clients: dict[str, httpx.Client] = {}

    def another() -> bool:
        client = stack.enter_context(
            httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_connections=1))
        )
        worker = worker_of(client)
        if worker in clients:
            client.close()
        else:
            clients[worker] = client
        return len(clients) == 2

    eventually("a connection to each worker", another)
    return clients


def pid_of(worker: str) -> int:
    return int(worker.rpartition(":")[2])


def test_two_workers_serve_log_and_count_as_one_machine(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    with supervised(tmp_path, postgres_url, redis_url) as running, ExitStack() as stack:
        clients = one_client_per_worker(stack, running.url)
        assert {pid_of(worker) for worker in clients} == running.workers()
        (first, a), (second, b) = clients.items()
        for _ in range(3):
            assert a.get("/nowhere").status_code == 404
        for _ in range(2):
            assert b.get("/nowhere").status_code == 404
        # Each worker bumped its own counter; whichever answers /metrics shows the sum, and a
        # resident memory per worker, labelled with its pid.
        for client in (a, b):
            text = client.get("/metrics").text
            assert value(text, "crossroads_rejected_requests_total", status="404") == 5
            for worker in clients:
                assert value(text, "crossroads_rss_bytes", pid=str(pid_of(worker))) > 0
                assert value(text, "crossroads_watchdog_level", pid=str(pid_of(worker))) == 0
            assert sample(text, "crossroads_rss_bytes") is None  # never a sum over workers
            assert value(text, "crossroads_active_streams") == 0
            assert value(text, "crossroads_generations_running") == 0
            assert value(text, "crossroads_slots_total") == 16
    logged = {line["worker"] for line in running.lines()}
    assert {first, second} <= logged
    # The supervisor logs too, under its own pid.
    assert f"{first.rpartition(':')[0]}:{running.proc.pid}" in logged


def test_a_killed_worker_is_replaced_and_sigterm_ends_every_worker(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    with supervised(tmp_path, postgres_url, redis_url) as running, ExitStack() as stack:
        clients = one_client_per_worker(stack, running.url)
        (killed, doomed), (survivor, kept) = clients.items()
        assert doomed.get("/nowhere").status_code == 404
        before = running.workers()
        os.kill(pid_of(killed), signal.SIGKILL)
        # The service keeps answering while the supervisor starts a replacement.
        assert kept.get("/readyz").status_code == 200
        replaced = eventually(
            "a replacement worker",
            lambda: (now := running.workers()) - before and len(now) == 2 and now,
        )
        assert pid_of(killed) not in replaced and pid_of(survivor) in replaced
        eventually("the replacement answers", lambda: answering(running.url))
        fresh = stack.enter_context(httpx.Client(base_url=running.url, timeout=10))
        for _ in range(20):
            assert fresh.get("/healthz").status_code == 200
        # The dead worker's count stays in the sum; its resident memory is gone.
        text = kept.get("/metrics").text
        assert value(text, "crossroads_rejected_requests_total", status="404") == 1
        assert sample(text, "crossroads_rss_bytes", pid=str(pid_of(killed))) is None

        def both_listed() -> bool:
            text = kept.get("/metrics").text
            return all(sample(text, "crossroads_rss_bytes", pid=str(pid)) for pid in replaced)

        eventually("each worker's memory in /metrics", both_listed)
        eventually("the replacement started", lambda: running.started() >= replaced)
        everyone = {running.proc.pid, *_children(running.proc.pid)}
        running.proc.send_signal(signal.SIGTERM)
        assert running.proc.wait(START_S) == 0
    eventually("no process of run.py left", lambda: not _running(everyone), timeout=10)
    assert finished(running) >= replaced  # each worker shut down gracefully, not killed


def test_ctrl_c_stops_the_supervisor_and_its_workers_gracefully(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    with supervised(tmp_path, postgres_url, redis_url) as running:
        workers = running.workers()
        everyone = {running.proc.pid, *_children(running.proc.pid)}
        shared = {
            Path(psutil.Process(pid).environ()["PROMETHEUS_MULTIPROC_DIR"]) for pid in workers
        }
        [metrics_dir] = shared  # one directory for the machine's workers
        assert list(metrics_dir.glob("counter_*.db"))
        # A terminal's Ctrl-C: SIGINT to the whole foreground process group.
        os.killpg(running.proc.pid, signal.SIGINT)
        assert running.proc.wait(START_S) == 0
    eventually("no process of run.py left", lambda: not _running(everyone), timeout=10)
    assert finished(running) >= workers
    assert not metrics_dir.exists()  # removed on the way out


def test_workers_stop_by_themselves_when_their_supervisor_is_killed(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    with supervised(tmp_path, postgres_url, redis_url) as running:
        workers = running.workers()
        everyone = {running.proc.pid, *_children(running.proc.pid)}
        running.proc.kill()
        running.proc.wait(10)
        # Orphaned, they would keep the port and a new run.py could not bind it.
        eventually("no process of run.py left", lambda: not _running(everyone), timeout=30)
    assert finished(running) >= workers
    assert running.logged("Supervisor gone") >= workers


def finished(running: Supervised) -> set[int]:
    """The workers that logged the end of uvicorn's graceful shutdown."""
    return running.logged("Finished server process")


def _running(pids: set[int]) -> list[str]:
    """Those of `pids` still running, with their command lines (a zombie has ended)."""
    found = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            if process.status() != psutil.STATUS_ZOMBIE:
                found.append(f"{pid} {process.status()} {process.cmdline()}")
        except psutil.NoSuchProcess:
            continue
    return found


def test_a_log_line_names_its_host_and_process() -> None:
    record = logging.LogRecord("crossroads", logging.INFO, __file__, 1, "Something", None, None)
    line = json.loads(JsonFormatter().format(record))
    assert line["worker"] == f"{socket.gethostname()}:{os.getpid()}"


def test_a_restarted_worker_leaves_the_deployment_values_to_those_who_read_them(
    tmp_path: Path, postgres_url: str, redis_url: str, upstream: Upstream
) -> None:
    """A slot is held on one worker; the other is killed and replaced. The newcomer, which has
    read nothing from Redis yet, must not cover the holder's reading with its blank one."""
    fake, upstream_url = upstream
    fake.reset(Script(hold_after=1))
    upstream_port = urlsplit(upstream_url).port
    with supervised(
        tmp_path,
        postgres_url,
        redis_url,
        CROSSROADS_LLM__BASE_URL=upstream_url,
        CROSSROADS_LLM__MODEL="fake-model",
        # Far-off deadlines and a long lease: the slot stays held, unrenewed, while we look.
        CROSSROADS_LIMITS__CHUNK_TIMEOUT_S="300",
        CROSSROADS_LIMITS__WORKER_TIME_LIMIT_S="300",
        CROSSROADS_SCALE__LEASE_S="300",
    ) as running:

        def holder() -> int | None:
            for pid in running.workers():
                with contextlib.suppress(psutil.NoSuchProcess):
                    for conn in psutil.Process(pid).net_connections("tcp"):
                        if conn.raddr and conn.raddr.port == upstream_port:
                            return pid
            return None

        async def slots_in_use() -> list[float]:
            """As a few new connections (so, likely both workers) read it."""
            found = []
            for _ in range(6):
                async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
                    found.append(value(await scrape(http), "crossroads_slots_in_use"))
            return found

        async def until_everyone_reads(expected: float) -> None:
            with anyio.fail_after(START_S):
                while True:
                    if await slots_in_use() == [expected] * 6:
                        return
                    await anyio.sleep(0.2)

        async def scenario() -> None:
            async with Visitor(running.url) as visitor:
                sid = await visitor.start("finance")
                async with anyio.create_task_group() as tg:
                    tg.start_soon(visitor.stream, sid, 0)
                    await fake.wait_for(lambda f: f.open_streams == 1, timeout=START_S)
                    holding = eventually("the worker holding the slot", holder)
                    await until_everyone_reads(1)
                    [other] = running.workers() - {holding}
                    os.kill(other, signal.SIGKILL)
                    eventually("a replacement started", lambda: len(running.started()) >= 3)
                    [newcomer] = running.workers() - {holding}

                    async def newcomer_publishes() -> None:
                        while True:
                            async with httpx.AsyncClient(base_url=running.url) as http:
                                text = await scrape(http)
                            if sample(text, "crossroads_rss_bytes", pid=str(newcomer)):
                                return
                            await anyio.sleep(0.1)

                    with anyio.fail_after(START_S):
                        await newcomer_publishes()
                    assert await slots_in_use() == [1] * 6
                    fake.release()
            # The holder read 0 when it gave the slot back: the latest reading wins again.
            await until_everyone_reads(0)

        anyio.run(scenario)
