"""The `cluster` case: one embedded worker against two distributed workers behind nginx, on
Redis and PostgreSQL, with the same fake upstream and the same N visitors at once."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cases import TOKENS, app_settings, loadavg, upstream_args, usage
from bench.procs import Monitor, clean_env, run_client, upstream
from bench.stats import per, stream_figures
from server.cluster import Cluster
from server.cluster_servers import PostgresProcess, RedisProcess

WORKERS = 2


@dataclass
class Servers:
    redis: RedisProcess
    postgres: PostgresProcess
    database_url: str


@contextmanager
def servers(root: Path) -> Iterator[Servers]:
    """redis-server and PostgreSQL of their own, as `make cluster` starts them."""
    redis = RedisProcess(root / "redis")
    postgres = PostgresProcess(root / "postgres")
    try:
        redis.start()
        postgres.start()
        yield Servers(redis, postgres, postgres.create_database("bench"))
    finally:
        postgres.stop()
        redis.stop()


def distributed(n: int, work: Path, *, workers: int) -> dict[str, Any]:
    label = f"distributed-{workers}-{n}"
    monitor = Monitor()
    # PostgreSQL's user must get through to its directory: not under the bench's 0700 temp dir.
    root = Path(tempfile.mkdtemp(prefix="crossroads-bench-cluster-"))
    root.chmod(0o711)
    try:
        with upstream(work, **upstream_args()) as (url, upstream_pid), servers(root) as found:
            monitor.watch("upstream", upstream_pid)
            settings = app_settings(url, root / "data", limits__max_concurrent_ai_requests=n + 10)
            deployment = Cluster(
                root / "cluster",
                redis_url=found.redis.url,
                database_url=found.database_url,
                env=clean_env(),
                workers=workers,
                overrides=sections(settings),
            )
            deployment.start()
            try:
                names = [f"worker-{w.index}" for w in deployment.workers]
                for name, worker in zip(names, deployment.workers, strict=True):
                    monitor.watch(name, _pid(worker.pid))
                monitor.watch("nginx", _pid(deployment.nginx.pid))
                monitor.watch("redis", _pid(found.redis.pid))
                monitor.watch("postgres", _pid(found.postgres.pid), tree=True)
                before = redis_calls(found.redis.port)
                spec = {"mode": "app", "port": deployment.nginx.port, "n": n, "timeout_s": 300}
                run = run_client(spec, monitor, work, timeout_s=400, label=label)
                after = redis_calls(found.redis.port)
                by_command = {
                    name: count - before.get(name, 0)
                    for name, count in after.items()
                    if count > before.get(name, 0)
                }
                commands = sum(by_command.values())
                peaks = {name: monitor.peak(name) for name in [*names, "redis", "postgres"]}
            finally:
                deployment.stop()
    finally:
        monitor.close()
        # The workers', nginx's and the servers' logs stay with the bench's own (kept on a failure
        # or with --keep).
        for log in root.rglob("*.log"):
            kept = work / label / log.relative_to(root)
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log, kept)
        shutil.rmtree(root, ignore_errors=True)
    figures = stream_figures(run.records, through_app=True)
    model_streams = sum(1 for r in run.records if r.get("ok") and r.get("fallback") is None)
    chunks = model_streams * TOKENS
    app_cpu = [usage(run.marks, name) for name in names]
    total_app = sum(c for c in app_cpu if c is not None)
    redis_cpu = usage(run.marks, "redis")
    frames = figures["sse_text_events"]
    return {
        "label": label,
        "kind": "cluster",
        "n": n,
        "workers": workers,
        "settings": {k: v for k, v in settings.items() if k != "llm.base_url"},
        "upstream": upstream_args(),
        "streams": figures,
        "model_streams": model_streams,
        "server": {
            "name": f"{workers} workers",
            "peak_rss_mb": max(peaks[name] for name in names),
            "cpu_s": total_app,
            "cpu_per_stream_s": per(total_app, n),
            "cpu_per_chunk_s": per(total_app, chunks),
            "cpu_per_sse_event_s": per(total_app, frames),
        },
        "workers_cpu_s": app_cpu,
        "nginx_cpu_s": usage(run.marks, "nginx"),
        "redis": {
            "cpu_s": redis_cpu,
            "cpu_per_chunk_s": per(redis_cpu, chunks),
            "peak_rss_mb": peaks["redis"],
            "commands": commands,
            "commands_per_frame": per(float(commands), frames),
            "commands_per_chunk": per(float(commands), chunks),
            "by_command": dict(sorted(by_command.items(), key=lambda kv: -kv[1])),
        },
        "postgres_cpu_s": usage(run.marks, "postgres"),
        "upstream_usage": {"cpu_s": usage(run.marks, "upstream")},
        "client": run.summary,
        "loadavg": loadavg(run.marks),
        "records": run.records,
    }


def sections(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"limits.x": 1} -> {"limits": {"x": 1}}, without the data directory (the cluster's own)."""
    out: dict[str, dict[str, Any]] = {}
    for dotted, value in settings.items():
        section, key = dotted.split(".")
        if dotted != "storage.data_dir":
            out.setdefault(section, {})[key] = value
    return out


def redis_calls(port: int) -> dict[str, int]:
    """How many times Redis has run each command since it started (INFO commandstats), asked
    by hand: only the app's distributed modules use the Redis client."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"INFO commandstats\r\n")
        data = b""
        while True:
            data += sock.recv(65536)
            head, _, body = data.partition(b"\r\n")
            if head.startswith(b"$") and len(body) >= int(head[1:]):
                break
    calls: dict[str, int] = {}
    for line in body.decode().splitlines():
        if line.startswith("cmdstat_"):
            name, _, stats = line.removeprefix("cmdstat_").partition(":")
            fields = dict(part.split("=", 1) for part in stats.split(","))
            calls[name] = int(fields["calls"])
    return calls


def _pid(pid: int | None) -> int:
    if pid is None:
        raise RuntimeError("a process of the cluster is not running")
    return pid
