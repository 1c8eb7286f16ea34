"""PostgreSQL connections for the store: the pool, the schema's migrations under an advisory
lock, and the server's failures in the store's terms (Unreachable, Unavailable)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from server import logs, schema
from server.records import Unavailable, Unreachable

Connection = psycopg.AsyncConnection[DictRow]

# One id for "migrating the schema", taken with pg_advisory_xact_lock: concurrent CREATE TABLE
# IF NOT EXISTS can still fail on PostgreSQL's catalog, so workers starting together queue here.
MIGRATION_LOCK = 0x63726F7373  # "cross"
# At start-up an unreachable server is reported, not waited for (whole seconds: libpq's).
CONNECT_TIMEOUT_S = 5
# While the server is up a request waits this long for a connection before it fails (503). A
# worker carrying hundreds of streams holds each connection far longer than its query takes
# (the event loop comes back to it late), so under a burst the queue for one lasts seconds:
# the request is served late rather than refused (at 5 s, 1,000 sessions started at once on
# two workers got hundreds of 503s and ended generations). A server that is away is known
# (`down`) and refused within DOWN_WAIT_S, so this wait is only ever spent on a live server.
ACQUIRE_TIMEOUT_S = 30.0
ACQUIRE_SLICE_S = 5.0  # how often a waiting request looks whether the server is away
PING_TIMEOUT_S = 2.0  # /readyz answers within a probe's usual timeout
# Per worker: N workers on M machines open up to N * M * POOL_MAX connections, which must stay
# under the server's max_connections (100 by default): 3 workers on one machine open 60. More
# connections than cores still help, since a connection's time is mostly the worker's.
POOL_MAX = 20
# How long the pool keeps trying to replace a lost connection before it gives the attempt up.
# psycopg_pool's default (300 s) backs off exponentially while PostgreSQL is away, and while one
# attempt waits out its delay no request starts another: an outage of a minute took up to a
# minute more to notice the server was back. Given up after a few seconds, the next request
# starts a fresh attempt at once, so the pool is back within about a second of the server.
RECONNECT_S = 2.0
# While the server is known to be away a request waits this long, not ACQUIRE_TIMEOUT_S, before
# its 503: long enough still for a server that is back (a reconnection attempt waits at most
# about a second before it tries again).
DOWN_WAIT_S = 2.0


def describe(url: str) -> str:
    """Which database and where, for a person: host, port and name, never the password."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "PostgreSQL (database_url is not a valid connection string)"
    host = parts.get("host") or "the local socket"
    port = parts.get("port") or "5432"
    return f"PostgreSQL at {host}:{port}/{parts.get('dbname') or parts.get('user') or ''}"


def first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


class PostgresDatabase:
    """A pool of connections in autocommit, rows as dicts; transactions are explicit."""

    def __init__(self, url: str) -> None:
        self._where = describe(url)
        # True from the moment the pool gave up connecting (for RECONNECT_S) until it makes a
        # connection again: while the server is known to be away, a request waits for a
        # connection only DOWN_WAIT_S, not ACQUIRE_TIMEOUT_S, before its 503.
        self.down = False
        self._pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            url,
            connection_class=psycopg.AsyncConnection[DictRow],
            kwargs={"autocommit": True, "row_factory": dict_row},
            min_size=1,
            max_size=POOL_MAX,
            open=False,
            # A connection broken by a server restart is replaced before it is handed out, so
            # the app recovers without a restart of its own.
            check=AsyncConnectionPool.check_connection,
            timeout=ACQUIRE_TIMEOUT_S,
            reconnect_timeout=RECONNECT_S,
            reconnect_failed=self._gave_up,
            configure=self._connected,
            name="crossroads",
        )

    def _gave_up(self, pool: object) -> None:
        if not self.down:
            logs.event(
                logging.WARNING,
                "Database unreachable: requests get a 503 until it answers",
                database=self._where,
            )
        self.down = True

    async def _connected(self, conn: Connection) -> None:
        if self.down:
            logs.event(logging.INFO, "Database reachable again", database=self._where)
        self.down = False

    @classmethod
    async def connect(cls, url: str) -> PostgresDatabase:
        """Connect and migrate the schema; Unreachable (one line saying which server and where)
        if the server does not answer."""
        try:
            # One direct connection first: its error says why (refused, unknown host, bad
            # password), where a pool that cannot fill itself only says it timed out.
            probe = await psycopg.AsyncConnection.connect(url, connect_timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            raise Unreachable(f"{describe(url)} is unreachable: {first_line(exc)}") from None
        await probe.close()
        # The pool's own warning for every failed attempt (about one a second while the server
        # is away, as plain text) gives way to this module's one line when it gives up and one
        # when it connects again.
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        database = cls(url)
        try:
            await database._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
            await database._migrate()
        except BaseException as exc:
            await database._pool.close()
            if isinstance(exc, PoolTimeout | psycopg.OperationalError):
                raise Unreachable(f"{describe(url)} is unreachable: {first_line(exc)}") from None
            raise
        return database

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(self, wait_s: float | None = None) -> AsyncIterator[Connection]:
        """A pooled connection (waiting at most `wait_s` for one); a database that cannot be
        reached becomes Unavailable, for the web layer to answer 503 with nothing acknowledged."""
        deadline = time.monotonic() + (wait_s or ACQUIRE_TIMEOUT_S)
        while True:
            # Waited for in slices: a request queued while the server was up is refused once
            # the pool finds it away (`down`), not after the whole wait for a busy pool.
            left = deadline - time.monotonic()
            acquired = False
            try:
                async with self._pool.connection(
                    max(0.01, min(left, DOWN_WAIT_S if self.down else ACQUIRE_SLICE_S))
                ) as conn:
                    acquired = True
                    yield conn
                return
            except PoolTimeout as exc:
                if acquired or self.down or time.monotonic() >= deadline:
                    raise Unavailable(first_line(exc)) from exc
            except psycopg.OperationalError as exc:
                raise Unavailable(first_line(exc)) from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def one(self, sql: str, params: tuple[Any, ...] = ()) -> DictRow | None:
        async with self.connection() as conn:
            return await (await conn.execute(sql, params)).fetchone()

    async def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[DictRow]:
        async with self.connection() as conn:
            return await (await conn.execute(sql, params)).fetchall()

    async def _migrate(self) -> None:
        async with self.transaction() as conn:
            # Held until this transaction ends: a second worker waits, then finds nothing to do.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await conn.execute(schema.VERSION_TABLE)
            current = await _version(conn)
            for number, statements in schema.pending(current):
                for statement in statements:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (number,))

    async def schema_version(self) -> int:
        async with self.connection() as conn:
            return await _version(conn)

    async def ping(self) -> bool:
        try:
            async with self.connection(PING_TIMEOUT_S) as conn:
                row = await (await conn.execute("SELECT 1 AS one")).fetchone()
        except Unavailable:
            return False
        return row is not None and row["one"] == 1


async def _version(conn: Connection) -> int:
    row = await (await conn.execute(schema.CURRENT_VERSION)).fetchone()
    return int(row["version"]) if row else 0
