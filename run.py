"""Start Crossroads under uvicorn from settings: `python run.py [--settings PATH] [--host H] [--port P]`."""

from __future__ import annotations

import argparse
import sys

import uvicorn

from server import logs
from server.app import create_app
from server.settings import SettingsError, load


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
    except SettingsError as error:
        print(f"crossroads: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.server.log_level)
    server = settings.server
    uvicorn.run(
        create_app(settings),
        host=server.host,
        port=server.port,
        workers=None,
        limit_concurrency=server.limit_concurrency,
        timeout_keep_alive=int(server.keep_alive_s),
        timeout_graceful_shutdown=int(server.graceful_shutdown_s) or None,
        log_level=server.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
        log_config=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
