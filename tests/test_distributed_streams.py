"""Two app instances on one Redis and one PostgreSQL (the distributed backend), each served on
its own port as a worker would be: a step's stream read on one resumes on the other."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import anyio
import httpx
import pytest

from server.app import create_app
from tests import sse
from tests.databases import Database
from tests.servers import serve_app
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio


async def test_a_stream_read_on_one_worker_resumes_on_another_with_exactly_the_missing_text(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    database = Database("postgres", postgres_url, tmp_path / "data", redis_url)
    # The offline writer, slowed so the scenario streams for a few seconds.
    settings = database.settings(offline={"chars_per_s": 150.0})
    with ExitStack() as stack:
        first, second = (stack.enter_context(serve_app(create_app(settings))) for _ in range(2))
        async with Visitor(first) as visitor:
            sid = await visitor.start()  # the first worker writes the scenario
            url = f"/s/{sid}/steps/0/stream"
            # Cookies go to 127.0.0.1 whatever the port; both workers share the secret key.
            async with httpx.AsyncClient(
                base_url=second, cookies=visitor.http.cookies, timeout=30.0
            ) as elsewhere:
                whole: list[sse.Stream] = []

                async def read_whole(client: httpx.AsyncClient) -> None:
                    whole.append(await sse.read(client, url))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(read_whole, visitor.http)
                    tg.start_soon(read_whole, elsewhere)
                    cut = await sse.read(visitor.http, url, until=lambda s: len(s.of("chunk")) >= 3)
                    last_id = [e.id for e in cut.events if e.id][-1]
                    resumed = await sse.read(elsewhere, url, last_event_id=last_id)
    assert resumed.status == 200 and resumed.names()[-1] == "done"
    # Only the missing text: no snapshot, chunks that go on where the first stream stopped.
    assert "snapshot" not in resumed.names() and resumed.of("chunk")
    version, offset = last_id.split(".")
    assert resumed.of("chunk")[0].id is not None
    assert resumed.of("chunk")[0].id.startswith(f"{version}.")
    expected = whole[0].text()
    assert expected and whole[1].text() == expected
    assert len(cut.text()) == int(offset)
    assert cut.text() + resumed.text(prefix="") == expected
    assert [s.names()[-1] for s in whole] == ["done", "done"]


async def test_a_stop_pressed_on_another_worker_ends_the_stream_within_a_second(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    database = Database("postgres", postgres_url, tmp_path / "data", redis_url)
    settings = database.settings(offline={"chars_per_s": 100.0})
    with ExitStack() as stack:
        first, second = (stack.enter_context(serve_app(create_app(settings))) for _ in range(2))
        async with Visitor(first) as visitor:
            sid = await visitor.start()  # the first worker writes the scenario
            streams: list[sse.Stream] = []
            ended = anyio.Event()

            async def watch() -> None:
                streams.append(await visitor.stream(sid, 0))
                ended.set()

            async with (
                httpx.AsyncClient(
                    base_url=second, cookies=visitor.http.cookies, timeout=30.0
                ) as elsewhere,
                anyio.create_task_group() as tg,
            ):
                tg.start_soon(watch)
                seen = await visitor.stream(sid, 0, until=lambda s: len(s.of("chunk")) >= 2)
                # Nobody watches the step on the second worker: it reads the text from Redis.
                stop = await elsewhere.post(
                    f"/s/{sid}/steps/0/stop", data={"csrf_token": visitor.token}
                )
                assert stop.status_code == 303
                # Announced to the owner (its own check of the store comes only at renewal).
                with anyio.fail_after(1.0):
                    await ended.wait()
    assert streams[0].names()[-1] == "done"
    store = await database.open()
    try:
        step = await store.step(sid, 0)
    finally:
        await store.close()
    assert step is not None and step.status == "stopped"
    # "Stop writing" keeps what was streamed: at least what the viewer had seen.
    assert seen.text() and step.text.startswith(seen.text())
