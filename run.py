"""Start Crossroads under uvicorn from settings: `python run.py [--settings PATH] [--host H] [--port P]`.

With `server.workers` = N > 1 (the distributed backend), uvicorn's own supervisor runs N worker
processes on one listening socket: each builds its own app (`worker_app`), a worker that dies is
replaced, and SIGTERM or Ctrl-C stops them all gracefully. This process only checks the settings
and the servers, then supervises; it never builds the app."""

from __future__ import annotations

import argparse
import gc
import json
import logging
import math
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette

from server import logs
from server.backends import check_backends
from server.settings import ServerSettings, Settings, SettingsError, load
from server.store import Unreachable, check_store

GC_THRESHOLD = 20_000
# Read by prometheus_client when a worker first imports it: its metrics go to files there, which
# every worker's /metrics sums (server/metrics.py). A fresh directory per start, removed at exit.
METRICS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# The command line, handed to the workers (spawned, so they start from nothing) as JSON. Not
# CROSSROADS_*: the settings would take that for a setting.
ARGV_VARIABLE = "RUN_PY_ARGV"
# How often a worker looks whether its supervisor is still there.
PARENT_POLL_S = 1.0
# Everything uvicorn is given besides the [server] settings, the same for one worker or several.
UVICORN_FIXED: dict[str, Any] = {
    "access_log": False,
    "loop": "uvloop",
    "http": "httptools",
    "log_config": None,
}


def uvicorn_options(server: ServerSettings) -> dict[str, Any]:
    """The keyword arguments for uvicorn.run that come from the [server] settings."""
    return {
        "host": server.host,
        "port": server.port,
        # Always explicit: None lets uvicorn take WEB_CONCURRENCY from the environment.
        "workers": server.workers,
        "limit_concurrency": server.limit_concurrency,
        # uvicorn wants whole seconds. Round up: int() turned keep_alive_s = 0.5 into 0 and
        # graceful_shutdown_s = 0.5 into 0, which `or None` then made an unbounded wait.
        "timeout_keep_alive": math.ceil(server.keep_alive_s),
        "timeout_graceful_shutdown": math.ceil(server.graceful_shutdown_s),
        "log_level": server.log_level,
    }


def tune_gc() -> None:
    """Fewer, cheaper garbage collections: the modules and objects of start-up are moved out of
    the collector's sight for good, and the youngest generation is collected every 20,000
    allocations instead of 700. Relaying allocates a few short-lived objects per chunk, and
    collections were a tenth of the app's CPU under load (bench/RESULTS.md)."""
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 20)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--settings", help="path to settings.toml (default: the one beside run.py)")
    parser.add_argument(
        "--host", help="interface to listen on (overrides settings and environment)"
    )
    parser.add_argument(
        "--port", type=int, help="port to listen on (overrides settings and environment)"
    )
    return parser.parse_args(argv)


def settings_from(args: argparse.Namespace) -> Settings:
    overrides: dict[str, dict[str, object]] = {"server": {}}
    if args.host is not None:
        overrides["server"]["host"] = args.host
    if args.port is not None:
        overrides["server"]["port"] = args.port
    return load(args.settings, overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    try:
        settings = settings_from(args)
        # Before uvicorn: a database or a Redis that does not answer is one line here, not a traceback
        # from the lifespan; and the schema is migrated once before any request is served.
        anyio.run(check_store, settings)
        anyio.run(check_backends, settings)
    except (SettingsError, Unreachable) as error:
        print(f"crossroads: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.server.log_level)
    options = {**uvicorn_options(settings.server), **UVICORN_FIXED}
    if settings.server.workers == 1:
        # Imported here: a supervisor never builds the app, and it would hold ~30 MB of modules
        # (the web layer, the model clients) for nothing.
        from server.app import create_app

        app = create_app(settings)
        tune_gc()
        uvicorn.run(app, **options)
        return 0
    with tempfile.TemporaryDirectory(prefix="crossroads-metrics-") as metrics_dir:
        os.environ[METRICS_DIR_VARIABLE] = metrics_dir
        os.environ[ARGV_VARIABLE] = json.dumps(argv)
        # uvicorn's supervisor (uvicorn.supervisors.Multiprocess): binds the socket once, spawns
        # the workers, pings each every half second and replaces one that died or hangs (unless
        # it failed before serving: then a restart would fail alike, and it stops), and on
        # SIGTERM/SIGINT sends each worker SIGTERM and waits for its graceful shutdown.
        uvicorn.run("run:worker_app", factory=True, **options)
    return 0


def worker_app() -> Starlette:
    """uvicorn's factory, called in each worker process: the parent's settings (same command
    line, same environment), checked there already; this worker's logs and app."""
    from server.app import create_app

    settings = settings_from(parse(json.loads(os.environ[ARGV_VARIABLE])))
    logs.configure(settings.server.log_level)
    stop_with_parent(os.getppid())
    app = create_app(settings, metrics_dir=Path(os.environ[METRICS_DIR_VARIABLE]))
    tune_gc()
    return app


def stop_with_parent(parent: int) -> None:
    """Shut this worker down gracefully once its supervisor is gone. uvicorn's workers outlive
    a SIGKILLed supervisor and would keep the port, so run.py started again could not bind it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        logs.event(logging.WARNING, "Supervisor gone: this worker stops", supervisor=parent)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor watch", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
