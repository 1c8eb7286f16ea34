"""A real Redis server for the tests: started as a child process once per session, emptied
(FLUSHALL) before each test that asks for it, stopped by its PID at the end."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30


def binary() -> str:
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
    )
    if found is None:
        pytest.fail(
            "redis-server is not installed: `make system-deps` (or `make test`) installs it"
        )
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server on 127.0.0.1:`port`, working in a temp dir of its own, with nothing
    written to disk (`--save ''`, no AOF): a test server is thrown away at the end.

    The server is this process's child, started in the foreground (no --daemonize): its PID is
    known without a pid file, stop() waits for it. It can be stopped and started again on the
    same port (a test of Redis going away mid-run); its data is then gone, as after a crash."""

    def __init__(self) -> None:
        self.binary = binary()
        self.root = Path(tempfile.mkdtemp(prefix="crossroads-redis-"))
        self.log = self.root / "redis.log"
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A synchronous client for the tests' own checks (the app uses redis.asyncio)."""
        return redis.Redis.from_url(self.url, socket_timeout=5, decode_responses=True)

    def start(self) -> None:
        """Start the server and wait until it answers PING."""
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    "--bind",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--dir",
                    str(self.root),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    # No "protected mode" surprises, and no background thread saving anything.
                    "--protected-mode",
                    "no",
                    "--loglevel",
                    "warning",
                ],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2) as probe:
                    probe.ping()
                return
            except redis.ConnectionError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"redis-server did not start: {self.log.read_text()}"
                    ) from None
                time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        """The server's PID; None when it is not running."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def stop(self) -> None:
        """SIGTERM by PID (redis-server exits at once with nothing to save), then a kill if it
        does not end in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def flush(self) -> None:
        with self.client() as client:
            client.flushall()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """Redis for the whole session, started the first time a test asks for it."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, empty: every test starts from a fresh logical state. A test that
    stopped the server gets it started again."""
    if redis_server.pid is None:
        redis_server.start()
    redis_server.flush()
    return redis_server.url
