"""The PostgreSQL harness itself: a server of its own, a fresh database per test, a clean stop."""

from __future__ import annotations

import os

import psycopg
import pytest

from tests.pg import PostgresServer


def test_each_test_gets_an_empty_database_of_its_own(
    postgres: PostgresServer, postgres_url: str
) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE mine (x int)")
    other = postgres.create_database()
    try:
        with psycopg.connect(other) as conn:
            assert conn.execute("SELECT to_regclass('mine')").fetchone() == (None,)
    finally:
        postgres.drop_database(other)


def test_the_server_listens_on_loopback_only_with_a_socket_dir_of_its_own(
    postgres: PostgresServer,
) -> None:
    with psycopg.connect(postgres.admin_url) as conn:
        settings = dict(
            conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('listen_addresses', 'unix_socket_directories', 'port')"
            ).fetchall()
        )
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(postgres.sockets),
        "port": str(postgres.port),
    }


def test_stop_ends_the_server_and_start_brings_it_back() -> None:
    server = PostgresServer()
    try:
        server.start()
        pid = server.pid
        assert pid is not None
        server.stop()
        assert server.pid is None
        with pytest.raises(ProcessLookupError):  # ended and reaped
            os.kill(pid, 0)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(server.admin_url, connect_timeout=2)
        server.start()  # the same data dir and port, as after an operator's restart
        with psycopg.connect(server.admin_url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()
        server.remove()
