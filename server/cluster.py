"""A distributed deployment on one machine, to try it (`make cluster`) and to test it: Redis,
PostgreSQL, N app workers and nginx round-robin in front, each a child process stopped by PID."""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from server.children import Child, ChildFailed
from server.cluster_servers import (
    NginxProcess,
    PostgresProcess,
    RedisProcess,
    free_port,
    listening,
)

ROOT = Path(__file__).resolve().parent.parent
WORKER_START_TIMEOUT_S = 60.0
# SIGTERM ends every open stream at once (its viewers resume elsewhere), so a worker stops in a
# second or two; past this it is killed.
WORKER_STOP_TIMEOUT_S = 20.0
DATABASE = "crossroads"

Overrides = Mapping[str, Mapping[str, object]]


def worker_environment(
    base: Mapping[str, str],
    *,
    redis_url: str,
    database_url: str,
    secret_key: str,
    data_dir: Path,
    overrides: Overrides | None = None,
) -> dict[str, str]:
    """What every worker of one deployment runs with: `base`, the distributed backend on these
    servers, one secret key (any worker verifies any cookie) and `overrides` ({section: {key:
    value}}) as CROSSROADS_<SECTION>__<KEY> variables, JSON like the settings read them."""
    settings: dict[str, dict[str, object]] = {
        "scale": {"backend": "distributed", "redis_url": redis_url, "database_url": database_url},
        "server": {"workers": 1},  # one process per port: the balancer spreads the load
        "storage": {"data_dir": str(data_dir)},
    }
    for section, values in (overrides or {}).items():
        settings.setdefault(section, {}).update(values)
    env = dict(base)
    env["CROSSROADS_SECRET_KEY"] = secret_key
    for section, values in settings.items():
        for key, value in values.items():
            env[f"CROSSROADS_{section.upper()}__{key.upper()}"] = json.dumps(value)
    return env


class WorkerProcess:
    """One `python run.py` on 127.0.0.1:`port`. stop() is a SIGTERM (it hands its leases back
    and ends its streams), then SIGKILL after WORKER_STOP_TIMEOUT_S; start() again after a stop
    or a kill runs it anew on the same port."""

    def __init__(self, index: int, root: Path, env: Mapping[str, str], port: int | None = None):
        self.index = index
        self.port = port or free_port()
        argv = [sys.executable, str(ROOT / "run.py"), "--host", "127.0.0.1"]
        argv += ["--port", str(self.port)]
        self.child = Child(
            f"worker {index}",
            argv,
            log=root / f"worker-{index}.log",
            cwd=ROOT,
            env=env,
            stop_timeout_s=WORKER_STOP_TIMEOUT_S,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.child.pid

    @property
    def log(self) -> Path:
        """Where its output (JSON log lines) goes."""
        return self.child.log

    def signal(self, sig: signal.Signals) -> None:
        """Send it `sig` by PID, if it runs."""
        self.child.signal(sig)

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing handed back. Returns once it is gone."""
        self.child.signal(signal.SIGKILL)
        self.child.wait(WORKER_STOP_TIMEOUT_S)

    def pause(self) -> None:
        """SIGSTOP: it holds its leases and connections but does nothing until resume()."""
        self.child.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.child.signal(signal.SIGCONT)

    def terminate(self) -> None:
        """SIGTERM without waiting: it hands its leases back and ends its streams (wait(), or
        stop(), to see it gone)."""
        self.child.signal(signal.SIGTERM)

    def wait(self, timeout_s: float = WORKER_STOP_TIMEOUT_S) -> int:
        """Wait for it to end; its return code."""
        return self.child.wait(timeout_s)

    def launch(self) -> None:
        self.child.launch()

    def wait_ready(self) -> None:
        self.child.wait_ready(self.answers, WORKER_START_TIMEOUT_S)

    def start(self) -> None:
        self.launch()
        self.wait_ready()

    def answers(self) -> bool:
        """Whether /healthz answers 200."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self) -> None:
        self.child.stop()


class Cluster:
    """`workers` app workers on the Redis and PostgreSQL at these URLs, and nginx round-robin over
    them on `port` (a free one if None); every file under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        redis_url: str,
        database_url: str,
        env: Mapping[str, str],
        workers: int = 3,
        port: int | None = None,
        overrides: Overrides | None = None,
        secret_key: str | None = None,
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.secret_key = secret_key or secrets.token_urlsafe(32)
        self.env = worker_environment(
            env,
            redis_url=redis_url,
            database_url=database_url,
            secret_key=self.secret_key,
            data_dir=root / "data",
            overrides=overrides,
        )
        self.workers = [WorkerProcess(i, root, self.env) for i in range(workers)]
        addresses = [f"127.0.0.1:{w.port}" for w in self.workers]
        self.nginx = NginxProcess.round_robin(root / "nginx", addresses, port)

    @property
    def url(self) -> str:
        """nginx's URL: where people (and tests) reach the deployment."""
        return self.nginx.url

    def start(self) -> None:
        """Start the workers at once (each migrates the schema under PostgreSQL's advisory lock),
        wait for all of them, then nginx. Anything started is stopped again if one fails."""
        try:
            for worker in self.workers:
                worker.launch()
            for worker in self.workers:
                worker.wait_ready()
            self.nginx.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """nginx first (no new requests), then every worker at once, each by its PID."""
        self.nginx.stop()
        for worker in self.workers:
            worker.child.signal(signal.SIGTERM)
        for worker in self.workers:
            worker.stop()


class Deployment:
    """What `make cluster` runs: its own Redis and PostgreSQL in a fresh directory under the
    system's temp dir, then a Cluster on them; stop() ends every process by PID and removes the
    directory (the journeys too: this is for trying the backend, not for keeping data)."""

    def __init__(self, *, env: Mapping[str, str], workers: int, port: int | None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="crossroads-cluster-"))
        # The postgres user must get through to its own directory inside.
        self.root.chmod(0o711)
        self._env = env
        self._workers = workers
        self._port = port
        self.redis: RedisProcess | None = None
        self.postgres: PostgresProcess | None = None
        self.cluster: Cluster | None = None

    def start(self) -> Cluster:
        try:
            self.redis = RedisProcess(self.root / "redis")
            self.redis.start()
            self.postgres = PostgresProcess(self.root / "postgres")
            self.postgres.start()
            self.cluster = Cluster(
                self.root / "cluster",
                redis_url=self.redis.url,
                database_url=self.postgres.create_database(DATABASE),
                env=self._env,
                workers=self._workers,
                port=self._port,
            )
            self.cluster.start()
        except BaseException:
            self.stop()
            raise
        return self.cluster

    def children(self) -> list[Child]:
        """Every process it runs: the workers, nginx, PostgreSQL and Redis."""
        found: list[Child] = []
        if self.cluster is not None:
            found += [w.child for w in self.cluster.workers] + [self.cluster.nginx.child]
        found += [server.child for server in (self.postgres, self.redis) if server is not None]
        return found

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        if self.postgres is not None:
            self.postgres.stop()
        if self.redis is not None:
            self.redis.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def ended(code: int | None) -> str:
    """How a child ended, in words: a signal is named (SIGTERM is a stop, not a crash)."""
    if code is None:
        return "is running"
    if code < 0:
        try:
            return f"was ended by {signal.Signals(-code).name}"
        except ValueError:
            return f"was ended by signal {-code}"
    return f"exited (code {code})"


def watch(children: Sequence[Child], stopping: threading.Event) -> None:
    """Until `stopping`: say so, once, when one of `children` ends by itself (nginx then sends a
    dead worker's share of the requests to the others; without Redis or PostgreSQL the workers
    degrade as the README says, and nothing here starts them again)."""
    reported: set[str] = set()
    while not stopping.wait(0.5):
        for child in children:
            if child.pid is None and child.name not in reported:
                reported.add(child.name)
                print(
                    f"crossroads cluster: {child.name} {ended(child.returncode)}; "
                    f"its log is {child.log}",
                    file=sys.stderr,
                    flush=True,
                )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.cluster",
        description="Run Crossroads' distributed backend on this machine until Ctrl-C: "
        "redis-server, PostgreSQL, the workers and nginx round-robin in front of them.",
    )
    parser.add_argument("--port", type=int, default=8080, help="nginx's port (default 8080)")
    parser.add_argument("--workers", type=int, default=3, help="app workers (default 3)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if listening(args.port):
        # Said before anything starts, not after nginx fails to bind once all the rest is up.
        print(f"crossroads cluster: port {args.port} is taken; try --port", file=sys.stderr)
        return 2
    stopping = threading.Event()

    def ask_to_stop(signum: int, frame: object) -> None:
        stopping.set()  # a second Ctrl-C changes nothing: the stop already under way finishes

    signal.signal(signal.SIGINT, ask_to_stop)
    signal.signal(signal.SIGTERM, ask_to_stop)
    started = time.monotonic()
    # The workers get this program's environment: OPENAI_API_KEY, CROSSROADS_LLM__BASE_URL...
    deployment = Deployment(env=os.environ, workers=args.workers, port=args.port)
    try:
        cluster = deployment.start()
        print(
            f"Crossroads on {cluster.url}: {args.workers} workers behind nginx, on their own "
            f"Redis and PostgreSQL; started in {time.monotonic() - started:.1f} s. Logs in "
            f"{deployment.root}. Ctrl-C stops it all.",
            flush=True,
        )
        for worker in cluster.workers:
            print(f"  worker {worker.index}: {worker.url} (pid {worker.pid})", flush=True)
        if deployment.redis is not None and deployment.postgres is not None:
            print(f"  redis: {deployment.redis.url} (pid {deployment.redis.pid})", flush=True)
            print(
                f"  postgres: {deployment.postgres.url(DATABASE)} (pid {deployment.postgres.pid})",
                flush=True,
            )
        watch(deployment.children(), stopping)
    except ChildFailed as error:
        print(f"crossroads cluster: {error}", file=sys.stderr)
        return 1
    finally:
        print("Stopping...", flush=True)
        deployment.stop()
    print("Stopped: every process ended, data removed.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
