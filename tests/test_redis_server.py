"""The Redis harness itself: a server of its own, empty for each test, nothing on disk, a clean
stop."""

from __future__ import annotations

import os

import pytest
import redis

from tests.redis_server import RedisServer


def test_each_test_starts_from_an_empty_redis(redis_server: RedisServer, redis_url: str) -> None:
    with redis_server.client() as client:
        assert client.dbsize() == 0
        client.set("left-behind", "by this test")


def test_what_an_earlier_test_left_is_gone(redis_server: RedisServer, redis_url: str) -> None:
    with redis_server.client() as client:
        assert client.get("left-behind") is None


def test_the_server_listens_on_loopback_and_writes_nothing_to_disk(
    redis_server: RedisServer,
) -> None:
    with redis_server.client() as client:
        config = client.config_get("*")
        assert client.info("server")["redis_version"].startswith("7.")
    assert (config["bind"], config["port"]) == ("127.0.0.1", str(redis_server.port))
    assert (config["save"], config["appendonly"]) == ("", "no")
    assert config["dir"] == str(redis_server.root)


def test_stop_ends_the_server_and_start_brings_it_back() -> None:
    server = RedisServer()
    try:
        server.start()
        pid = server.pid
        assert pid is not None
        server.stop()
        assert server.pid is None
        with pytest.raises(ProcessLookupError):  # ended and reaped
            os.kill(pid, 0)
        with pytest.raises(redis.ConnectionError), server.client() as client:
            client.ping()
        server.start()  # the same port, as after an operator's restart
        with server.client() as client:
            assert client.ping()
    finally:
        server.stop()
        server.remove()
