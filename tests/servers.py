"""Run the app under a real uvicorn on 127.0.0.1, in a thread (fast) or as a process (crash tests)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn
from starlette.types import ASGIApp

ROOT = Path(__file__).resolve().parent.parent


class _AppThread(threading.Thread):
    def __init__(self, app: ASGIApp, sock: socket.socket, graceful_s: float) -> None:
        super().__init__(name="crossroads-app", daemon=True)
        config = uvicorn.Config(
            app,
            lifespan="on",
            ws="none",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=max(1, int(graceful_s)),
            # Longer than any test: uvicorn's 5 s default closed an idle pooled connection just
            # as a busy test's client sent its next request on it (ReadError, no response).
            timeout_keep_alive=300,
        )
        self.server = uvicorn.Server(config)
        self._sock = sock
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with asyncio.Runner() as runner:
                runner.run(self.server.serve(sockets=[self._sock]))
        except BaseException as exc:  # surfaced by serve_app
            self.error = exc


@contextmanager
def serve_app(app: ASGIApp, *, graceful_s: float = 1.0) -> Iterator[str]:
    """Serve the app from a background thread; yield its base URL."""
    with socket.create_server(("127.0.0.1", 0)) as sock:
        thread = _AppThread(app, sock, graceful_s)
        thread.start()
        deadline = time.monotonic() + 20
        while not thread.server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start: {thread.error!r}")
            time.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}"
        finally:
            thread.server.should_exit = True
            thread.join(30)
            if thread.is_alive():
                raise RuntimeError("the app did not shut down")
    if thread.error is not None:
        raise thread.error


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# make's own state when the tests run under `make test`: a `make` a test runs would think
# itself recursive and print "Entering/Leaving directory" lines.
MAKE_STATE = frozenset({"MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES"})


def inherited(name: str) -> bool:
    """Whether a variable of the developer's shell may reach a test: never an API key, a
    CROSSROADS_* override or make's recursion state."""
    return (
        name != "OPENAI_API_KEY" and not name.startswith("CROSSROADS_") and name not in MAKE_STATE
    )


def clean_env(**extra: str) -> dict[str, str]:
    """The shell's environment without what `inherited` keeps out, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if inherited(k)}
    env.update(extra)
    return env


@contextmanager
def run_process(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`python run.py` as a real process; waits until /healthz answers."""
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "run.py"), "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the app process did not start: {proc.stderr.read()!r}")  # type: ignore[union-attr]
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.stderr is not None:
            proc.stderr.close()
