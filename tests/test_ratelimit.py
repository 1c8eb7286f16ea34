"""Per-client rate limits, the same contract for both backends: in this process and in Redis."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from redis.asyncio import Redis

from server import shared_redis
from server.app import create_app
from server.ratelimit import LocalRateLimiter, RateLimiter
from server.ratelimit_redis import RedisRateLimiter
from server.shared_redis import SharedRedis
from tests import stored
from tests.databases import Database
from tests.redis_server import RedisServer, free_port
from tests.servers import serve_app
from tests.visitor import CSRF

pytestmark = pytest.mark.anyio

Make = Callable[..., RateLimiter]


@pytest.fixture(params=["local", "redis"])
async def make_limiter(request: pytest.FixtureRequest) -> AsyncIterator[Make]:
    """A factory of limiters of each backend in turn; the Redis ones share one empty Redis."""
    clients: list[Redis] = []

    def make(per_minute: int, **options: Any) -> RateLimiter:
        if request.param == "local":
            return LocalRateLimiter(per_minute, **options)
        clients.append(shared_redis.client(request.getfixturevalue("redis_url")))
        return RedisRateLimiter(SharedRedis(clients[-1]), per_minute, name="test", **options)

    yield make
    for client in clients:
        await client.aclose()


async def test_allows_per_minute_then_says_how_long_to_wait(make_limiter: Make) -> None:
    limiter = make_limiter(3)
    assert [await limiter.check("1.2.3.4") for _ in range(3)] == [None, None, None]
    wait = await limiter.check("1.2.3.4")
    assert wait is not None and 1.0 <= wait <= 60.0
    assert await limiter.check("1.2.3.4") is not None


async def test_each_client_has_its_own_window(make_limiter: Make) -> None:
    limiter = make_limiter(1)
    assert await limiter.check("a") is None
    assert await limiter.check("b") is None
    assert await limiter.check("a") is not None


async def test_zero_means_no_limit(make_limiter: Make) -> None:
    limiter = make_limiter(0)
    assert [await limiter.check("a") for _ in range(100)] == [None] * 100


async def test_the_window_slides(make_limiter: Make) -> None:
    limiter = make_limiter(1, window_s=0.5)
    assert await limiter.check("a") is None
    wait = await limiter.check("a")
    assert wait == 1.0  # never less than a second, so Retry-After is a whole number
    await anyio.sleep(0.6)  # the window's own length: Redis's clock, not one the test can drive
    assert await limiter.check("a") is None


async def test_refused_requests_do_not_extend_the_wait(make_limiter: Make) -> None:
    limiter = make_limiter(1, window_s=0.5)
    assert await limiter.check("a") is None
    for _ in range(5):
        assert await limiter.check("a") is not None
    await anyio.sleep(0.6)
    assert await limiter.check("a") is None


def test_the_local_window_follows_its_clock() -> None:
    now = [0.0]
    limiter = LocalRateLimiter(2, clock=lambda: now[0])

    async def check() -> float | None:
        return await limiter.check("a")

    assert anyio.run(check) is None
    now[0] = 30.0
    assert anyio.run(check) is None
    assert anyio.run(check) == 30.0  # the first request leaves the window at 60
    now[0] = 60.0
    assert anyio.run(check) is None


# Redis: one limit for every worker


@pytest.fixture
async def redis_clients(redis_url: str) -> AsyncIterator[list[SharedRedis]]:
    """Three clients, each with its own connection pool: three workers' views of one Redis."""
    clients = [SharedRedis(shared_redis.client(redis_url)) for _ in range(3)]
    yield clients
    for client in clients:
        await client.close()


async def test_the_limit_holds_across_workers(redis_clients: list[SharedRedis]) -> None:
    workers = [RedisRateLimiter(c, 5, name="sessions") for c in redis_clients]
    allowed: list[int] = []

    async def ask(index: int) -> None:
        if await workers[index % 3].check("1.2.3.4") is None:
            allowed.append(index)

    async with anyio.create_task_group() as tg:
        for index in range(30):
            tg.start_soon(ask, index)
    assert len(allowed) == 5  # not 5 per worker: one atomic window


async def test_actions_are_counted_apart(redis_clients: list[SharedRedis]) -> None:
    sessions = RedisRateLimiter(redis_clients[0], 1, name="sessions")
    answers = RedisRateLimiter(redis_clients[1], 1, name="answers")
    assert await sessions.check("a") is None
    assert await answers.check("a") is None
    assert await sessions.check("a") is not None


async def test_a_clients_window_expires_with_its_last_request(
    redis_clients: list[SharedRedis],
) -> None:
    limiter = RedisRateLimiter(redis_clients[0], 3, name="sessions")
    await limiter.check("1.2.3.4")
    look = redis_clients[1].client
    keys = await look.keys("*")
    assert keys == ["crossroads:ratelimit:sessions:1.2.3.4"]
    assert 0 < await look.pttl(keys[0]) <= 60_000


async def test_an_unreachable_redis_allows_counts_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nothing_there = SharedRedis(shared_redis.client(f"redis://127.0.0.1:{free_port()}/0"))
    unavailable: list[int] = []
    limiter = RedisRateLimiter(
        nothing_there, 1, name="sessions", on_unavailable=lambda: unavailable.append(1)
    )
    with caplog.at_level(logging.INFO, logger="crossroads"):
        results = [await limiter.check("a") for _ in range(3)]
    await nothing_there.close()
    assert results == [None, None, None]  # allowed: never a 500, never everyone refused
    assert len(unavailable) == 3
    assert nothing_there.calls == 1  # then paused: the next two did not wait on Redis
    warnings = [r for r in caplog.records if "not enforced" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


async def test_the_limit_holds_again_when_redis_is_back(
    redis_server: RedisServer, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    redis = SharedRedis(shared_redis.client(redis_url), clock=lambda: now[0])
    limiter = RedisRateLimiter(redis, 1, name="sessions")
    try:
        assert await limiter.check("a") is None
        redis_server.stop()
        with caplog.at_level(logging.INFO, logger="crossroads"):
            assert await limiter.check("a") is None  # allowed while Redis is away
            redis_server.start()  # empty again, as after a crash
            calls = redis.calls
            assert await limiter.check("a") is None  # within the pause: not tried yet
            assert redis.calls == calls
            now[0] += shared_redis.PAUSE_S
            assert await limiter.check("a") is None  # tried again: the window starts afresh
            assert await limiter.check("a") is not None  # and holds, on the same client
        events = [r.getMessage() for r in caplog.records]
        assert events == [
            "Rate limit not enforced: Redis is unreachable",
            "Rate limit enforced again: Redis answers",
        ]
    finally:
        await redis.close()


# The app: three workers on one Redis and one PostgreSQL, a client going round-robin


async def test_three_workers_hold_one_limit_per_client(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    database = Database("postgres", postgres_url, tmp_path / "data", redis_url)
    settings = database.settings(limits={"sessions_per_minute_per_client": 4})
    with ExitStack() as stack:
        urls = [stack.enter_context(serve_app(create_app(settings))) for _ in range(3)]
        # One browser: cookies go to 127.0.0.1 whatever the port, and every worker verifies
        # them with the shared secret, as behind a balancer with no sticky sessions.
        async with httpx.AsyncClient(timeout=30.0) as browser:
            home = await browser.get(urls[0] + "/")
            token = CSRF.search(home.text)
            assert token is not None
            statuses = [
                (
                    await browser.post(
                        urls[attempt % 3] + "/sessions",
                        data={"category": "finance", "csrf_token": token.group(1)},
                    )
                ).status_code
                for attempt in range(9)
            ]
    assert statuses == [303] * 4 + [429] * 5  # 4 in all, not 4 per worker
    assert stored.counts(settings)["sessions"] == 4
