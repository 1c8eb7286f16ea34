"""The worker's Redis client: the start-up check's one line, and the pause after a failure that
keeps a hung Redis from stalling every request."""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator

import anyio
import pytest
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from server import shared_redis
from server.shared_redis import RedisPaused, RedisUnreachable, SharedRedis
from tests.redis_server import RedisServer, free_port

pytestmark = pytest.mark.anyio


def test_describe_names_where_without_the_password() -> None:
    assert shared_redis.describe("redis://:hunter2@cache.internal:6380/2") == (
        "Redis at redis://cache.internal:6380/2"
    )
    assert shared_redis.describe("redis://localhost") == "Redis at redis://localhost:6379/0"
    assert shared_redis.describe("rediss://u:p@h/1") == "Redis at rediss://h:6379/1"


async def test_an_unreachable_redis_is_one_line_saying_where() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(RedisUnreachable) as raised:
        await SharedRedis.connect(f"redis://:hunter2@127.0.0.1:{port}/0")
    message = str(raised.value)
    assert message.startswith(f"Redis at redis://127.0.0.1:{port}/0 is unreachable: ")
    assert "\n" not in message and "hunter2" not in message


@pytest.fixture
async def shared(redis_url: str) -> AsyncIterator[tuple[SharedRedis, list[float]]]:
    now = [0.0]
    redis = SharedRedis(await shared_redis.connect(redis_url), clock=lambda: now[0])
    yield redis, now
    await redis.close()


async def test_a_hung_redis_is_waited_on_once_then_not_until_the_pause_ends(
    shared: tuple[SharedRedis, list[float]], redis_server: RedisServer
) -> None:
    redis, now = shared
    pid = redis_server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # accepts connections, answers nothing: a hung Redis
    try:
        with anyio.fail_after(shared_redis.SOCKET_TIMEOUT_S * 3):  # the timeout, not retried
            with pytest.raises(RedisTimeoutError):
                await redis.call(lambda: redis.client.get("k"))
        assert redis.paused and redis.calls == 1
        with pytest.raises(RedisPaused):
            await redis.call(lambda: redis.client.get("k"))
        assert redis.calls == 1  # failed at once, without waiting on Redis
        now[0] += shared_redis.PAUSE_S
        assert not redis.paused
    finally:
        os.kill(pid, signal.SIGCONT)
    assert await redis.call(lambda: redis.client.set("k", "v"))
    assert await redis.call(lambda: redis.client.get("k")) == "v"


async def test_readiness_asks_redis_even_while_paused(
    shared: tuple[SharedRedis, list[float]], redis_server: RedisServer
) -> None:
    redis, _ = shared
    redis_server.stop()
    assert not await redis.ping()
    assert redis.paused
    redis_server.start()
    assert await redis.ping()  # tried regardless of the pause, which its answer ends
    assert not redis.paused


async def test_an_error_in_a_command_is_not_redis_being_away(
    shared: tuple[SharedRedis, list[float]],
) -> None:
    redis, _ = shared
    await redis.call(lambda: redis.client.set("text", "not a list"))
    with pytest.raises(ResponseError):
        await redis.call(lambda: redis.client.lpush("text", "x"))
    assert not redis.paused


async def test_more_calls_at_once_than_connections_wait_for_one_and_pause_nothing(
    redis_url: str,
) -> None:
    # A worker's hundreds of generations publishing at once: more calls than its pool holds.
    redis = SharedRedis(shared_redis.client(redis_url))
    try:
        calls = 3 * shared_redis.MAX_CONNECTIONS

        async def hold(results: list[object]) -> None:
            # BLPOP on an empty list keeps its connection for the whole 0.1 s.
            results.append(await redis.call(lambda: redis.client.blpop(["nothing"], timeout=0.1)))

        results: list[object] = []
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(calls):
                    tg.start_soon(hold, results)
        assert results == [None] * calls
        assert not redis.paused
    finally:
        await redis.close()


async def test_a_pool_that_stays_full_fails_the_call_without_pausing_redis(
    redis_url: str,
) -> None:
    redis = SharedRedis(shared_redis.client(redis_url, max_connections=1))
    pool = redis.client.connection_pool
    assert isinstance(pool, shared_redis.WaitingPool)
    pool.timeout = 0.2
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(redis.call, lambda: redis.client.blpop(["nothing"], timeout=1))
            await anyio.sleep(0.1)
            with pytest.raises(shared_redis.RedisBusy):
                await redis.call(lambda: redis.client.get("k"))
        assert not redis.paused
        assert await redis.call(lambda: redis.client.get("k")) is None
    finally:
        await redis.close()
