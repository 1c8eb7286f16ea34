"""Start Crossroads under uvicorn from settings: `python run.py [--settings PATH] [--host H] [--port P]`."""

from __future__ import annotations

import argparse
import gc
import math
import sys
from typing import Any

import anyio
import uvicorn

from server import logs
from server.app import create_app
from server.backends import check_backends
from server.settings import ServerSettings, SettingsError, load
from server.store import Unreachable, check_store

GC_THRESHOLD = 20_000


def uvicorn_options(server: ServerSettings) -> dict[str, Any]:
    """The keyword arguments for uvicorn.run that come from the [server] settings."""
    return {
        "host": server.host,
        "port": server.port,
        "workers": None,
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--settings", help="path to settings.toml (default: the one beside run.py)")
    parser.add_argument(
        "--host", help="interface to listen on (overrides settings and environment)"
    )
    parser.add_argument(
        "--port", type=int, help="port to listen on (overrides settings and environment)"
    )
    args = parser.parse_args(argv)
    overrides: dict[str, dict[str, object]] = {"server": {}}
    if args.host is not None:
        overrides["server"]["host"] = args.host
    if args.port is not None:
        overrides["server"]["port"] = args.port
    try:
        settings = load(args.settings, overrides=overrides)
        # Before uvicorn: a database or a Redis that does not answer is one line here, not a traceback
        # from the lifespan; and the schema is migrated once before any request is served.
        anyio.run(check_store, settings)
        anyio.run(check_backends, settings)
    except (SettingsError, Unreachable) as error:
        print(f"crossroads: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.server.log_level)
    app = create_app(settings)
    tune_gc()
    uvicorn.run(
        app,
        **uvicorn_options(settings.server),
        access_log=False,
        loop="uvloop",
        http="httptools",
        log_config=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
