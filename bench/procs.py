"""The processes under test: the fake upstream, the app, the load client, and a psutil sampler."""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SAMPLE_S = 0.2
MB = 1024 * 1024


def raise_fd_limit() -> None:
    """Thousands of sockets per process: lift the soft limit to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "OPENAI_API_KEY" and not k.startswith("CROSSROADS_")
    }
    env.update(extra or {})
    return env


def stop(proc: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    """SIGTERM, then SIGKILL after `timeout`: this process only, by its own handle."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Usage:
    rss_mb: float
    cpu_s: float


@dataclass
class Watched:
    name: str
    process: psutil.Process
    tree: bool = False  # with its children (PostgreSQL's backends)
    peak_rss_mb: float = 0.0
    last: Usage = field(default_factory=lambda: Usage(0.0, 0.0))


class Monitor:
    """Samples RSS and CPU seconds of the server processes every 0.2 s, on a thread."""

    def __init__(self) -> None:
        self._watched: dict[str, Watched] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-monitor", daemon=True)
        self._thread.start()

    def watch(self, name: str, pid: int, *, tree: bool = False) -> None:
        with self._lock:
            self._watched[name] = Watched(name, psutil.Process(pid), tree)
        self.sample()

    def unwatch(self, name: str) -> Watched | None:
        self.sample()
        with self._lock:
            return self._watched.pop(name, None)

    def sample(self) -> dict[str, Usage]:
        now: dict[str, Usage] = {}
        with self._lock:
            for name, watched in self._watched.items():
                try:
                    usage = _usage(watched.process)
                    for child in watched.process.children(recursive=True) if watched.tree else ():
                        try:
                            more = _usage(child)
                        except psutil.Error:
                            continue  # a child that ended between the listing and the reading
                        usage = Usage(usage.rss_mb + more.rss_mb, usage.cpu_s + more.cpu_s)
                except psutil.Error:
                    continue
                rss = usage.rss_mb
                watched.last = usage
                watched.peak_rss_mb = max(watched.peak_rss_mb, rss)
                now[name] = watched.last
        return now

    def peak(self, name: str) -> float:
        with self._lock:
            watched = self._watched.get(name)
            return watched.peak_rss_mb if watched else 0.0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()


def _usage(process: psutil.Process) -> Usage:
    with process.oneshot():
        rss = process.memory_info().rss / MB
        times = process.cpu_times()
    return Usage(rss, times.user + times.system)


@contextmanager
def upstream(
    log_dir: Path,
    *,
    first_delay_s: float,
    tokens: int,
    rate: float,
    quick_max_tokens: tuple[int, ...] = (),
) -> Iterator[tuple[str, int]]:
    """The fake OpenAI-compatible upstream as a process; yields its /v1 URL and pid."""
    args = [PYTHON, "-m", "tests.fake_upstream", "--port", "0"]
    args += ["--first-delay", str(first_delay_s), "--tokens", str(tokens), "--rate", str(rate)]
    for cap in quick_max_tokens:
        args += ["--quick-max-tokens", str(cap)]
    with (log_dir / "upstream.log").open("ab") as log:
        proc = subprocess.Popen(
            args, cwd=ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=log, text=True
        )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        if not line.startswith("listening "):
            raise RuntimeError(f"the fake upstream did not start: {line!r}")
        yield line.split(" ", 1)[1].strip(), proc.pid
    finally:
        stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def app_env(settings: Mapping[str, Any]) -> dict[str, str]:
    """`{"limits.queue_timeout_s": 5}` -> CROSSROADS_LIMITS__QUEUE_TIMEOUT_S=5."""
    env = {"CROSSROADS_SECRET_KEY": "bench-secret-key-not-for-production"}
    for dotted, value in settings.items():
        section, key = dotted.split(".")
        name = f"CROSSROADS_{section.upper()}__{key.upper()}"
        env[name] = value if isinstance(value, str) else json.dumps(value)
    return clean_env(env)


@contextmanager
def app(log_dir: Path, settings: Mapping[str, Any]) -> Iterator[tuple[int, int]]:
    """`python run.py --port P` with the settings as environment overrides; yields port, pid."""
    port = free_port()
    command = [PYTHON, "run.py", "--port", str(port)]
    stalls = os.environ.get("BENCH_STALLS")
    if stalls:
        # The event-loop stall probe (bench/stalls.py) wraps the app: a diagnostic only.
        Path(stalls).mkdir(parents=True, exist_ok=True)
        out = Path(stalls) / f"stalls-{port}.json"
        command = [PYTHON, "-m", "bench.stalls", str(out), *command[1:]]
    with (log_dir / "app.log").open("ab") as log:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=app_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start; see {log_dir / 'app.log'}")
            time.sleep(0.1)
        with profiled(proc.pid, log_dir):
            yield port, proc.pid
    finally:
        stop(proc, 30)


@contextmanager
def profiled(pid: int, log_dir: Path) -> Iterator[None]:
    """With BENCH_PYSPY=DIR set, py-spy samples the app (native frames too) while it serves:
    collapsed stacks go to DIR/app-<pid>.txt. py-spy is a developer tool, not a dependency."""
    out_dir = os.environ.get("BENCH_PYSPY")
    if not out_dir:
        yield
        return
    spy = Path(PYTHON).with_name("py-spy")
    out = Path(out_dir) / f"app-{pid}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    args = [str(spy), "record", "--pid", str(pid), "--native", "--rate", "100"]
    args += ["--format", "raw", "--output", str(out)]
    with (log_dir / "py-spy.log").open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class ClientRun:
    summary: dict[str, Any]
    records: list[dict[str, Any]]
    marks: dict[str, dict[str, Any]]


def run_client(
    spec: dict[str, Any], monitor: Monitor, work_dir: Path, *, timeout_s: float, label: str
) -> ClientRun:
    """The load client as a process; each `MARK name` it prints snapshots the servers' usage."""
    spec = {**spec, "out": str(work_dir / f"client-{label}.json")}
    spec_path = work_dir / f"spec-{label}.json"
    spec_path.write_text(json.dumps(spec))
    marks: dict[str, dict[str, Any]] = {}
    with (work_dir / "client.log").open("ab") as log:
        proc = subprocess.Popen(
            [PYTHON, "-m", "bench.client", str(spec_path)],
            cwd=ROOT,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    timer = threading.Timer(timeout_s, proc.kill)
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("MARK "):
                usage = monitor.sample()
                marks[line.split()[1]] = {
                    "at": time.monotonic(),
                    "loadavg": os.getloadavg(),
                    **{name: vars(u) for name, u in usage.items()},
                }
        proc.wait()
    finally:
        timer.cancel()
        stop(proc)
        if proc.stdout is not None:
            proc.stdout.close()
    if proc.returncode != 0:
        raise RuntimeError(
            f"the load client failed ({proc.returncode}); see {work_dir / 'client.log'}"
        )
    result = json.loads(Path(spec["out"]).read_text())
    return ClientRun(result["summary"], result["records"], marks)
