"""The distributed backend's one Redis client per worker, and its start-up check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import anyio
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server.records import Unreachable

T = TypeVar("T")

# Every call is bounded: a Redis that hangs costs a request at most this long, then the caller
# falls back (a rate limit allows, the cache misses). One quick retry rides over a dropped
# connection (a Redis restart); a timeout is not retried, since a Redis that hangs once will
# hang again.
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 2.0
HEALTH_CHECK_S = 30
# After a call fails for want of Redis, calls are not tried for this long: a hung or
# partitioned Redis costs one request SOCKET_TIMEOUT_S now and then, not every request.
PAUSE_S = 5.0
UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, OSError)
# The client's connections, shared by every call of the worker: one reader blocked on its
# mirrors' streams, the stop listener, and for the rest one call at a time each (a frame's
# publish, a lease renewal, a cache read). Hundreds of generations publishing their frames at
# once outnumber any pool, so a call waits for a connection instead of failing (redis-py's
# default pool raised "Too many connections", which read as Redis being away); each connection
# is back within SOCKET_TIMEOUT_S of its call, so the wait is bounded by the calls ahead of it.
MAX_CONNECTIONS = 256
POOL_WAIT_S = 30.0


class RedisBusy(RedisConnectionError):
    """No connection of the worker's pool came free within POOL_WAIT_S: the call fails (a
    ConnectionError, so its caller falls back as it does for Redis away), but this worker is
    busy, Redis is not away: nothing is paused for it."""


class RedisUnreachable(Unreachable):
    """Redis does not answer at start-up; the message says where (run.py prints it, exits 2)."""


def describe(url: str) -> str:
    """`Redis at redis://host:port/db`, without a password that the URL may carry."""
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"
    return f"Redis at {parts.scheme or 'redis'}://{where}"


class WaitingPool(ConnectionPool):
    """A pool whose callers wait their turn for a free connection (RedisBusy after `timeout`)
    where redis-py's pool raised "Too many connections". A semaphore, not redis-py's
    BlockingConnectionPool: that one takes a condition's lock on every call and every release,
    a hand-over between tasks each time, which under hundreds of publishing generations queued
    even the lease renewals past their lease."""

    def __init__(self, *, timeout: float = POOL_WAIT_S, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.timeout = timeout
        self._free = asyncio.Semaphore(self.max_connections)

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        if self._free.locked():
            try:
                with anyio.fail_after(self.timeout):
                    await self._free.acquire()
            except TimeoutError:
                raise RedisBusy(f"no free Redis connection within {self.timeout} s") from None
        else:
            await self._free.acquire()  # at once: no task switch on the usual path
        try:
            async with self._lock:
                connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            self._free.release()
            raise
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        taken = connection in self._in_use_connections
        await super().release(connection)
        if taken:
            self._free.release()


def client(url: str, *, max_connections: int = MAX_CONNECTIONS) -> Redis:
    """A client with its connection pool; connections are made when first used."""
    pool = WaitingPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_S,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_S,
        retry=Retry(
            ExponentialBackoff(cap=0.1, base=0.01), 1, supported_errors=(RedisConnectionError,)
        ),
    )
    return Redis.from_pool(pool)


async def connect(url: str) -> Redis:
    """A client that has answered PING; RedisUnreachable (one line) when it does not."""
    redis = client(url)
    try:
        await redis.ping()
    except (RedisError, OSError) as exc:
        await redis.aclose()
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RedisUnreachable(f"{describe(url)} is unreachable: {detail}") from None
    return redis


class RedisPaused(RedisConnectionError):
    """Not tried: Redis failed a moment ago (SharedRedis.PAUSE_S). A ConnectionError, so every
    caller treats it as Redis being away."""


class SharedRedis:
    """The worker's one client (and connection pool) for everything it keeps in Redis, and what
    it learned of Redis's reachability: after a failure, calls fail at once for `pause_s`. This
    memory decides nothing about the data, only whether to wait on Redis now."""

    def __init__(
        self,
        client: Redis,
        *,
        pause_s: float = PAUSE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.calls = 0  # calls that reached the client (the tests read it)
        self._pause_s = pause_s
        self._clock = clock
        self._paused_until = 0.0

    @classmethod
    async def connect(cls, url: str) -> SharedRedis:
        return cls(await connect(url))

    @property
    def paused(self) -> bool:
        return self._clock() < self._paused_until

    async def call(self, operation: Callable[[], Awaitable[T]]) -> T:
        """`operation` on the client, unless Redis failed within the pause (RedisPaused)."""
        if self.paused:
            raise RedisPaused("Redis failed a moment ago; not tried")
        self.calls += 1
        try:
            result = await operation()
        except (RedisBusy, MaxConnectionsError):
            # A full pool is this worker's load, not Redis away: the next call is tried.
            raise
        except UNAVAILABLE:
            self._paused_until = self._clock() + self._pause_s
            raise
        self._paused_until = 0.0
        return result

    async def ping(self) -> bool:
        """Whether Redis answers now (readiness): always tried, pause or not; an answer ends
        the pause at once."""
        self._paused_until = 0.0
        try:
            return bool(await self.call(self.client.ping))
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.client.aclose()
