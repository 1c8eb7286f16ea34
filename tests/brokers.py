"""The generation broker of the test's backend (tests/databases.py): the embedded `Generations`, or
a `RedisBroker` on the test's Redis and PostgreSQL. Each broker made is one worker: two
distributed ones share only what is in Redis and the database, as two processes would."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from typing import Protocol

import anyio
import pytest

from server.broker import Broker
from server.broker_redis import RedisBroker
from server.shared_redis import SharedRedis
from server.streaming import Generations
from tests.databases import Database

# Long enough that no lease renewal reads the store within a test (these brokers run steps the
# store does not hold); takeovers and fencing on the store are tests/test_broker_redis.py's.
LEASE_S = 60.0
FRAME_S = 0.02
LIVE_TTL_S = 60.0


class BrokerFactory(Protocol):
    def __call__(
        self, *, grace_s: float, on_abandon: Callable[[], None] = ...
    ) -> Awaitable[Broker]: ...


@pytest.fixture
async def brokers(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[BrokerFactory]:
    """`await brokers(grace_s=...)` makes a broker of the test's backend, running (in a task
    group of the fixture's) until the test ends."""
    database: Database = request.getfixturevalue("database")
    closing = AsyncExitStack()  # each worker's Redis client and store, closed after its tasks
    try:
        async with anyio.create_task_group() as tg:

            async def make(
                *, grace_s: float, on_abandon: Callable[[], None] = lambda: None
            ) -> Broker:
                if database.backend == "sqlite":
                    return Generations(tg, grace_s=grace_s, on_abandon=on_abandon)
                redis = await SharedRedis.connect(database.redis_url)
                closing.push_async_callback(redis.close)
                store = await database.open()
                closing.push_async_callback(store.close)
                broker = RedisBroker(
                    tg,
                    redis,
                    store,
                    grace_s=grace_s,
                    lease_s=LEASE_S,
                    frame_s=FRAME_S,
                    live_ttl_s=LIVE_TTL_S,
                    on_abandon=on_abandon,
                )
                tg.start_soon(broker.run, name="generation broker")
                return broker

            yield make
            tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            await closing.aclose()
