"""One log format per process: ours and other libraries' records, all as JSON lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from run import UVICORN_FIXED
from server import logs

TOUCHED = ("", "crossroads", "uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """What configure() sends out; the logging set-up it changes is put back afterwards."""
    saved = [
        (logger, logger.handlers[:], logger.level, logger.propagate)
        for logger in (logging.getLogger(name) for name in TOUCHED)
    ]
    # As in a fresh process: an earlier uvicorn of this test process built with access_log=False
    # cut the access logger off for good (a later Config with True does not join it again).
    access = logging.getLogger("uvicorn.access")
    access.handlers[:], access.propagate = [], True
    out = io.StringIO()
    try:
        yield out
    finally:
        logging.captureWarnings(False)
        for logger, handlers, level, propagate in saved:
            logger.handlers[:] = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    # Every line is JSON: a plain-text one makes json.loads fail here.
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_other_libraries_records_are_json_lines_from_warning_up(stream: io.StringIO) -> None:
    logs.configure("info", stream)
    try:
        raise RuntimeError("lost")
    except RuntimeError:
        logging.getLogger("asyncio").error("Task exception was never retrieved", exc_info=True)
    logging.getLogger("psycopg.pool").error("error connecting in %r: %s", "pool-1", "refused")
    logging.getLogger("redis.connection").warning("Redis went away")
    logging.getLogger("httpx").info("HTTP Request: POST http://model/v1/chat/completions")
    logs.event(logging.INFO, "Expired old sessions", removed=2)

    found = {line["event"]: line for line in lines(stream)}
    assert set(found) == {
        "Task exception was never retrieved",
        "error connecting in 'pool-1': refused",
        "Redis went away",
        "Expired old sessions",
    }
    lost = found["Task exception was never retrieved"]
    assert (lost["logger"], lost["level"]) == ("asyncio", "error")
    assert "RuntimeError: lost" in lost["exception"]
    assert found["Redis went away"]["logger"] == "redis.connection"
    assert set(lost) >= {"ts", "worker", "request_id", "session_id", "step"}
    # Ours keep the keys they had.
    assert "logger" not in found["Expired old sessions"]
    assert found["Expired old sessions"]["removed"] == 2


def test_a_stricter_level_holds_for_other_libraries_too(stream: io.StringIO) -> None:
    logs.configure("error", stream)
    logging.getLogger("redis.connection").warning("Redis went away")
    logs.event(logging.WARNING, "Ours at warning")
    logs.event(logging.ERROR, "Ours at error")
    assert [line["event"] for line in lines(stream)] == ["Ours at error"]


def test_python_warnings_are_json_lines(stream: io.StringIO) -> None:
    logs.configure("info", stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old call", DeprecationWarning, stacklevel=1)
    (line,) = lines(stream)
    assert line["logger"] == "py.warnings"
    assert "DeprecationWarning: old call" in line["event"]


def test_configuring_twice_writes_each_line_once(stream: io.StringIO) -> None:
    logs.configure("info", stream)
    logs.configure("info", stream)
    logging.getLogger("asyncio").warning("Once")
    assert [line["event"] for line in lines(stream)] == ["Once"]


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def one_request(access_log: bool) -> None:
    """A real uvicorn with run.py's fixed options (access log as given) serving one request."""
    app = Starlette(routes=[Route("/", hello)])
    options = {**UVICORN_FIXED, "access_log": access_log, "loop": "asyncio"}
    config = uvicorn.Config(app, lifespan="off", log_level="info", **options)
    server = uvicorn.Server(config)
    with socket.create_server(("127.0.0.1", 0)) as sock:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        async with asyncio.timeout(20):
            while not server.started:  # noqa: ASYNC110 (uvicorn offers a flag, no event)
                await asyncio.sleep(0.01)
            port = sock.getsockname()[1]
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/")
            assert response.text == "hello"
            server.should_exit = True
            await serving


@pytest.mark.anyio
@pytest.mark.parametrize("access_log", [False, True])
async def test_uvicorn_keeps_its_access_log_choice_and_writes_json(
    stream: io.StringIO, access_log: bool
) -> None:
    logs.configure("info", stream)
    await one_request(access_log)
    found = lines(stream)
    assert any(line["event"].startswith("Started server process") for line in found)
    access = [line for line in found if line.get("logger") == "uvicorn.access"]
    if access_log:
        (line,) = access
        assert '"GET / HTTP/1.1" 200' in line["event"]
    else:
        assert access == []
