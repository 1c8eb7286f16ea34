"""What only the PostgreSQL store does: say which server it cannot reach, and live through the
server's restart without one of its own."""

from __future__ import annotations

import logging
import time

import anyio
import pytest

from server.db_postgres import ACQUIRE_TIMEOUT_S, POOL_MAX, PostgresDatabase, describe
from server.store import Unavailable, Unreachable
from server.store_postgres import PostgresStore
from tests.pg import PostgresServer, free_port

pytestmark = pytest.mark.anyio

OUTAGE_S = 8.0


def test_a_database_is_described_by_host_port_and_name_never_its_password() -> None:
    text = describe("postgresql://crossroads:hunter2@db.internal:6432/journeys?sslmode=require")
    assert text == "PostgreSQL at db.internal:6432/journeys"
    assert "hunter2" not in describe("host=db.internal password=hunter2 dbname=journeys")


async def test_an_unreachable_server_is_one_line_saying_which_and_where() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(Unreachable) as caught:
        await PostgresStore.connect(f"postgresql://crossroads:hunter2@127.0.0.1:{port}/crossroads")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"PostgreSQL at 127.0.0.1:{port}/crossroads is unreachable: ")
    assert "hunter2" not in message


async def test_the_store_recovers_when_the_server_comes_back(
    own_postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="crossroads")
    store = await PostgresStore.connect(own_postgres.create_database())
    try:
        session = await store.create_session(
            owner="o", category="finance", seed=1, questions_total=1
        )
        own_postgres.stop()
        assert await store.ping() is False
        with pytest.raises(Unavailable):  # not a driver error: the web layer answers 503
            await store.begin_generation(session.id, 0)
        # Away long enough for the pool's reconnection attempts to back off (1, 2, 4, 8 s...):
        # with psycopg_pool's defaults the next attempt then came seconds after the server was
        # back, and the first requests failed though it answered.
        with anyio.move_on_after(OUTAGE_S):
            while True:  # requests keep coming meanwhile, as they do to a live app
                assert await store.ping() is False
                await anyio.sleep(0.2)
        # Known to be away, a request is refused without waiting out the acquire timeout.
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await store.begin_generation(session.id, 0)
        assert time.monotonic() - started < ACQUIRE_TIMEOUT_S
        own_postgres.start()
        # The first request after the server is back is served (it may wait for the pool's new
        # connection, within its usual acquire timeout): no restart, no polling.
        assert await store.begin_generation(session.id, 0) == 1
        assert await store.ping() is True
        assert (await store.session(session.id)) == session
    finally:
        await store.close()
    # Said once each, in the app's log: gone (when the pool gave up connecting), and back.
    said = [r.getMessage() for r in caplog.records if r.name == "crossroads"]
    assert said == [
        "Database unreachable: requests get a 503 until it answers",
        "Database reachable again",
    ]
    assert not [r for r in caplog.records if r.name.startswith("psycopg")]


async def test_a_request_behind_a_busy_pool_waits_for_a_connection_instead_of_failing(
    postgres_url: str,
) -> None:
    # A worker carrying hundreds of streams keeps every connection busy for seconds on end
    # (its event loop runs late); the server is up, so a request queues rather than gets a
    # 503. Held longer than a request used to wait (5 s) before it failed.
    hold_s = 6.0
    database = await PostgresDatabase.connect(postgres_url)
    try:
        held = anyio.Event()
        holding = 0

        async def hold() -> None:
            nonlocal holding
            async with database.connection() as conn:
                await conn.execute("SELECT 1")
                holding += 1
                if holding == POOL_MAX:
                    held.set()
                await anyio.sleep(hold_s)

        async with anyio.create_task_group() as tg:
            for _ in range(POOL_MAX):
                tg.start_soon(hold)
            await held.wait()
            row = await database.one("SELECT 1 AS one")
        assert row is not None and row["one"] == 1
    finally:
        await database.close()
