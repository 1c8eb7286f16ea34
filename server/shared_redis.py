"""The distributed backend's one Redis client per worker, and its start-up check."""

from __future__ import annotations

from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from server.records import Unreachable

# Every call is bounded: a Redis that hangs costs a request at most this long, then the caller
# falls back (a rate limit allows, the cache misses). One quick retry rides over a dropped
# connection (a Redis restart) without turning an outage into a pile of waiting requests.
SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 2.0
HEALTH_CHECK_S = 30


class RedisUnreachable(Unreachable):
    """Redis does not answer at start-up; the message says where (run.py prints it, exits 2)."""


def describe(url: str) -> str:
    """`Redis at redis://host:port/db`, without a password that the URL may carry."""
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"
    return f"Redis at {parts.scheme or 'redis'}://{where}"


def client(url: str) -> Redis:
    """A client with its connection pool; connections are made when first used."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        health_check_interval=HEALTH_CHECK_S,
        retry=Retry(ExponentialBackoff(cap=0.1, base=0.01), 1),
    )


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


class SharedRedis:
    """The worker's one client (and connection pool) for everything it keeps in Redis."""

    def __init__(self, client: Redis) -> None:
        self.client = client

    @classmethod
    async def connect(cls, url: str) -> SharedRedis:
        return cls(await connect(url))

    async def ping(self) -> bool:
        """Whether Redis answers now (readiness)."""
        try:
            return bool(await self.client.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.client.aclose()
