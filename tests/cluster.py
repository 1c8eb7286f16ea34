"""The process harness: a distributed deployment as real processes for one test (three app
workers, nginx round-robin in front, the fake upstream), on the session's Redis and PostgreSQL.
The API is described in /work/notes/cluster.md; server/cluster.py starts the workers and nginx
the way `make cluster` does."""

from __future__ import annotations

import html
import json
import re
import shutil
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.children import Child
from server.cluster import Cluster, WorkerProcess
from server.cluster_servers import free_port
from server.settings import Settings, load
from tests import sse
from tests.pg import PostgresServer
from tests.redis_server import RedisServer
from tests.servers import ROOT, clean_env

JsonDict = dict[str, Any]
Sections = Mapping[str, Mapping[str, Any]]

# The settings every cluster of the tests runs with (a test's own overrides go on top): short
# deadlines as conftest's fast_limits, a quick heartbeat, no rate limits unless a test sets them.
DEFAULTS: dict[str, dict[str, Any]] = {
    "llm": {"model": "fake-model"},
    "limits": {
        "max_concurrent_ai_requests": 4,
        "queue_timeout_s": 5.0,
        "first_token_timeout_s": 5.0,
        "chunk_timeout_s": 5.0,
        "worker_time_limit_s": 30.0,
        "max_attempts": 1,
        "sessions_per_minute_per_client": 0,
        "answers_per_minute_per_client": 0,
    },
    "stream": {"heartbeat_s": 1.0, "frame_ms": 20, "abandon_grace_s": 1.0},
    "scale": {"lease_s": 3.0},
    "server": {"graceful_shutdown_s": 2, "log_level": "info"},
}


_STEP_TEXT = re.compile(r'<div class="prose" id="step-\d+-text"[^>]*>(.*?)</div>', re.S)
_TAG = re.compile(r"<[^>]+>")


def done_text(stream: sse.Stream) -> str:
    """The text of the step in a stream's `done` element, as a reader sees it: tags dropped,
    entities decoded, paragraphs joined by a blank line."""
    done = stream.of("done")
    assert done, f"no done event: {stream.names()}"
    found = _STEP_TEXT.search(done[-1].data)
    assert found is not None, done[-1].data
    paragraphs = re.split(r"</p>\s*<p>", found.group(1).strip())
    return "\n\n".join(html.unescape(_TAG.sub("", p)).strip() for p in paragraphs)


class UpstreamProcess:
    """tests/fake_upstream.py as a process of its own (`python -m tests.fake_upstream`), scripted
    and read over HTTP through its /_fake/ control paths."""

    def __init__(self, root: Path) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "tests.fake_upstream", "--port", str(self.port)]
        self.child = Child(
            "fake upstream", argv, log=root / "upstream.log", cwd=ROOT, env=clean_env()
        )

    @property
    def url(self) -> str:
        """The base URL the app's [llm] base_url takes."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self.child.pid

    def start(self) -> None:
        self.child.start(self._answers, timeout_s=30)

    def stop(self) -> None:
        self.child.stop()

    def _answers(self) -> bool:
        try:
            self.state()
            return True
        except OSError:
            return False

    def _call(self, method: str, path: str, body: JsonDict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.url}/_fake/{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)

    def state(self) -> JsonDict:
        """{requests, open_streams, max_open_streams, completed, client_closed, dropped, cut}."""
        result: JsonDict = self._call("GET", "state")
        return result

    def requests(self) -> list[JsonDict]:
        """Every chat-completions request body since the last reset."""
        result: list[JsonDict] = self._call("GET", "requests")
        return result

    def script(self, default: JsonDict | None = None, queue: list[JsonDict] | None = None) -> None:
        """Set the default script and/or queue scripts for the next requests, each a dict of
        tests.fake_upstream.Script's fields (chunks, chunk_delay_s, first_delay_s, hold_after,
        stall_after, status, ...)."""
        body: JsonDict = {"queue": queue or []}
        if default is not None:
            body["default"] = default
        self._call("POST", "script", body)

    def release(self) -> None:
        """Held streams (hold_after) go on."""
        self._call("POST", "release", {})

    def reset(self, default: JsonDict | None = None) -> None:
        """A fresh fake: held streams released, queue and request log emptied, counters zeroed."""
        self._call("POST", "reset", {"default": default} if default is not None else {})


@dataclass
class RunningCluster:
    """One test's deployment. `url` is nginx's; `workers[i]` are server.cluster.WorkerProcess
    (url, pid, port, signal(), kill(), pause(), resume(), terminate(), stop(), start(), log);
    `settings` are the workers' own, for reading the database through a store (tests/stored.py)."""

    cluster: Cluster
    upstream: UpstreamProcess
    redis: RedisServer
    postgres: PostgresServer
    database_url: str
    settings: Settings
    root: Path

    @property
    def url(self) -> str:
        return self.cluster.url

    @property
    def workers(self) -> list[WorkerProcess]:
        return self.cluster.workers

    @property
    def nginx_pid(self) -> int | None:
        return self.cluster.nginx.pid

    def logs(self, lines: int = 40) -> str:
        """The end of every process's log (workers, nginx, the upstream), for a failure report."""
        children = [w.child for w in self.workers] + [self.cluster.nginx.child, self.upstream.child]
        return "\n".join(f"--- {c.name} (pid {c.pid}){c.tail(lines)}" for c in children)

    def pids(self) -> list[int]:
        """The PIDs of the processes this cluster started that still run (not Redis and
        PostgreSQL, which belong to the session)."""
        children = [w.child for w in self.workers] + [self.cluster.nginx.child, self.upstream.child]
        return [c.pid for c in children if c.pid is not None]


def sections(*layers: Sections) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            merged.setdefault(section, {}).update(values)
    return merged


@contextmanager
def logs_on_failure(cluster: Cluster, upstream: UpstreamProcess) -> Iterator[None]:
    """Used as a plain context manager (not through the fixtures, whose failures the report
    hook below covers): on an exception, the end of every process's log goes to stderr before
    the cluster's directory is removed."""
    try:
        yield
    except BaseException:
        children = [w.child for w in cluster.workers] + [cluster.nginx.child, upstream.child]
        for child in children:
            print(f"--- {child.name} (pid {child.pid}){child.tail(40)}", file=sys.stderr)
        raise


@contextmanager
def running_cluster(
    redis: RedisServer,
    postgres: PostgresServer,
    upstream: UpstreamProcess,
    *,
    settings: Sections | None = None,
    workers: int = 3,
) -> Iterator[RunningCluster]:
    """Start a cluster on a flushed Redis and a fresh database; stop it (by PID) at the end,
    even when the test failed."""
    if redis.pid is None:  # a test before stopped it and did not start it again
        redis.start()
    if postgres.pid is None:
        postgres.start()
    redis.flush()
    upstream.reset()
    database_url = postgres.create_database()
    root = Path(tempfile.mkdtemp(prefix="crossroads-cluster-test-"))
    overrides = sections(DEFAULTS, {"llm": {"base_url": upstream.url}}, settings or {})
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        stack.callback(postgres.drop_database, database_url)
        cluster = Cluster(
            root,
            redis_url=redis.url,
            database_url=database_url,
            env=clean_env(),
            workers=workers,
            overrides=overrides,
        )
        stack.callback(cluster.stop)
        stack.enter_context(logs_on_failure(cluster, upstream))
        cluster.start()
        yield RunningCluster(
            cluster=cluster,
            upstream=upstream,
            redis=redis,
            postgres=postgres,
            database_url=database_url,
            settings=load(environ=cluster.env),
            root=root,
        )
    upstream.reset()  # no held stream of this test left open into the next one


ClusterFactory = Callable[..., RunningCluster]
# The clusters a test (or, for shared_cluster, its module) started: their logs go with a failure.
CLUSTERS = pytest.StashKey[list[RunningCluster]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test's report carries the end of every log of its clusters (taken now, while
    the processes and their directory are still there: teardown comes after)."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if not report.failed:
        return
    for node in item.listchain():
        for running in node.stash.get(CLUSTERS, []):
            report.sections.append((f"cluster logs ({running.root})", running.logs()))


@pytest.fixture(scope="session")
def upstream_process() -> Iterator[UpstreamProcess]:
    """The fake upstream as a process, for the whole session (reset for each cluster)."""
    root = Path(tempfile.mkdtemp(prefix="crossroads-upstream-"))
    upstream = UpstreamProcess(root)
    try:
        upstream.start()
        yield upstream
    finally:
        upstream.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def start_cluster(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    postgres: PostgresServer,
    upstream_process: UpstreamProcess,
) -> Iterator[ClusterFactory]:
    """start_cluster(settings={"limits": {...}}, workers=3) -> RunningCluster, stopped at the
    end of the test."""
    with ExitStack() as stack:

        def start(*, settings: Sections | None = None, workers: int = 3) -> RunningCluster:
            running = stack.enter_context(
                running_cluster(
                    redis_server, postgres, upstream_process, settings=settings, workers=workers
                )
            )
            request.node.stash.setdefault(CLUSTERS, []).append(running)
            return running

        yield start


@pytest.fixture
def cluster(start_cluster: ClusterFactory) -> RunningCluster:
    """A cluster with the default test settings, for this test alone."""
    return start_cluster()


@pytest.fixture(scope="module")
def shared_cluster(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    postgres: PostgresServer,
    upstream_process: UpstreamProcess,
) -> Iterator[RunningCluster]:
    """One cluster with the default test settings for every test of a module that uses it:
    sound only for tests that stop, kill or pause nothing, and that script the upstream
    themselves (a script stays set for the next test)."""
    with running_cluster(redis_server, postgres, upstream_process) as running:
        request.node.stash.setdefault(CLUSTERS, []).append(running)
        yield running
