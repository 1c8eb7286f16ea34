"""A real PostgreSQL server for the tests: started as a child process once per session (the way
`make cluster` starts one), a fresh database per test, stopped by its PID at the end."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from server.children import ChildFailed
from server.cluster_servers import PostgresProcess, free_port

__all__ = ["PostgresServer", "free_port", "postgres", "postgres_url"]


class PostgresServer(PostgresProcess):
    """The app's PostgreSQL process (server/cluster_servers.py) in a temp dir of its own, with
    what the tests add: an admin URL, fresh databases made and dropped through psycopg, and
    the directory removed at the end."""

    def __init__(self) -> None:
        try:
            super().__init__(Path(tempfile.mkdtemp(prefix="crossroads-pg-")))
        except ChildFailed as error:  # not installed: say how to install it
            pytest.fail(str(error))
        self._names = itertools.count(1)

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        name = name or f"test_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            # FILE_COPY: copying template1's few files beats WAL-logging every block of them.
            admin.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.admin_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def running() -> Iterator[PostgresServer]:
    """A server started now, stopped and its files removed at the end."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        server.remove()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """PostgreSQL for the whole session, started the first time a test asks for it."""
    yield from running()


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of the test's own, for a test that stops and starts it mid-test."""
    yield from running()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """A fresh, empty database of its own for one test."""
    url = postgres.create_database()
    yield url
    postgres.drop_database(url)
