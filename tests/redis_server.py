"""A real Redis server for the tests: started as a child process once per session (the way
`make cluster` starts one), emptied (FLUSHALL) before each test that asks for it, stopped by its
PID at the end."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from server.children import ChildFailed
from server.cluster_servers import RedisProcess, free_port

__all__ = ["RedisServer", "free_port", "redis_server", "redis_url"]


class RedisServer(RedisProcess):
    """The app's Redis process (server/cluster_servers.py) in a temp dir of its own, with what
    the tests add: a client for their own checks, FLUSHALL, the directory removed at the end.
    Stopped and started again it comes back on the same port, empty, as after a crash."""

    def __init__(self) -> None:
        try:
            super().__init__(Path(tempfile.mkdtemp(prefix="crossroads-redis-")))
        except ChildFailed as error:  # not installed: say how to install it
            pytest.fail(str(error))

    def client(self) -> redis.Redis:
        """A synchronous client for the tests' own checks (the app uses redis.asyncio)."""
        return redis.Redis.from_url(self.url, socket_timeout=5, decode_responses=True)

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
