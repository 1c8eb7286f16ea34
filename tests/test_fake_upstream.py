"""The fake upstream behaves like OpenAI to the real SDK, in-process and over a real socket."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import openai
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk

from tests.fake_upstream import DEFAULT_CHUNKS, FakeUpstream, Script, serve

MakeClient = Callable[[], AsyncOpenAI]
MESSAGES: Any = [{"role": "user", "content": "Begin."}]
LIMIT = 20  # seconds; generous backstop, tests normally take milliseconds


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture(params=["transport", "server"])
def make_client(request: pytest.FixtureRequest, fake: FakeUpstream) -> Iterator[MakeClient]:
    """Clients wired to `fake` either in-process or through a real socket."""
    if request.param == "transport":
        yield lambda: AsyncOpenAI(
            api_key="test",
            base_url="http://fake.test/v1",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=fake.transport()),
        )
    else:
        with serve(fake) as url:
            yield lambda: AsyncOpenAI(api_key="test", base_url=url, max_retries=0)


async def start(client: AsyncOpenAI) -> openai.AsyncStream[ChatCompletionChunk]:
    return await client.chat.completions.create(model="m-1", messages=MESSAGES, stream=True)


def text_of(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


@pytest.mark.anyio
async def test_normal_stream(make_client: MakeClient, fake: FakeUpstream) -> None:
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            chunks = [chunk async for chunk in await start(client)]
        await fake.wait_for(lambda f: f.completed == 1 and f.open_streams == 0)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert text_of(chunks) == "".join(DEFAULT_CHUNKS)
    assert [c.choices[0].finish_reason for c in chunks] == [None] * 13 + ["stop"]
    assert {c.model for c in chunks} == {"m-1"}
    assert fake.requests[0]["model"] == "m-1"
    assert fake.requests[0]["stream"] is True
    assert fake.request_headers[0]["authorization"] == "Bearer test"
    assert fake.client_closed == fake.dropped == 0


@pytest.mark.anyio
async def test_rate_limit_carries_retry_after(make_client: MakeClient, fake: FakeUpstream) -> None:
    fake.script(Script(status=429, retry_after="7"))
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            with pytest.raises(openai.RateLimitError) as caught:
                await start(client)
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.code == "rate_limit_exceeded"
    assert fake.open_streams == fake.max_open_streams == 0  # errors are not streams


@pytest.mark.anyio
@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors(make_client: MakeClient, fake: FakeUpstream, status: int) -> None:
    fake.script(Script(status=status))
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            with pytest.raises(openai.InternalServerError) as caught:
                await start(client)
    assert caught.value.status_code == status
    assert caught.value.type == "server_error"


@pytest.mark.anyio
async def test_drop_breaks_the_stream(make_client: MakeClient, fake: FakeUpstream) -> None:
    fake.script(Script(drop_after=3))
    received: list[ChatCompletionChunk] = []
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            # The SDK wraps the broken body (httpx2.RemoteProtocolError) as APIConnectionError.
            with pytest.raises(openai.APIConnectionError) as caught:
                async for chunk in await start(client):
                    received.append(chunk)
        await fake.wait_for(lambda f: f.dropped == 1 and f.open_streams == 0)
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    assert text_of(received) == "".join(DEFAULT_CHUNKS[:3])


@pytest.mark.anyio
async def test_malformed_line_raises(make_client: MakeClient, fake: FakeUpstream) -> None:
    fake.script(Script(malformed_at=2))
    received: list[ChatCompletionChunk] = []
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            # The SDK does not wrap bad SSE JSON: json.JSONDecodeError (a ValueError) escapes.
            with pytest.raises(json.JSONDecodeError):
                async for chunk in await start(client):
                    received.append(chunk)
        await fake.wait_for(lambda f: f.open_streams == 0)
    assert text_of(received) == "".join(DEFAULT_CHUNKS[:2])


@pytest.mark.anyio
async def test_close_without_finish(make_client: MakeClient, fake: FakeUpstream) -> None:
    fake.script(Script(close_without_finish=True))
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            chunks = [chunk async for chunk in await start(client)]
        await fake.wait_for(lambda f: f.completed == 1)
    assert text_of(chunks) == "".join(DEFAULT_CHUNKS)
    assert all(c.choices[0].finish_reason is None for c in chunks)


@pytest.mark.anyio
async def test_usage_chunk_and_no_done(make_client: MakeClient, fake: FakeUpstream) -> None:
    fake.script(Script(chunks=["a", "b"], usage_chunk=True, send_done=False))
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            chunks = [chunk async for chunk in await start(client)]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2
    assert chunks[-2].choices[0].finish_reason == "stop"


@pytest.mark.anyio
async def test_stall_then_client_close(make_client: MakeClient, fake: FakeUpstream) -> None:
    fake.script(Script(stall_after=2))
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            stream = await start(client)
            received = [await anext(stream) for _ in range(3)]  # role chunk + 2 texts
            await fake.wait_for(lambda f: f.open_streams == 1)
            await stream.close()
            await fake.wait_for(lambda f: f.client_closed == 1 and f.open_streams == 0)
    assert text_of(received) == "".join(DEFAULT_CHUNKS[:2])
    assert fake.completed == fake.dropped == 0


@pytest.mark.anyio
async def test_hold_until_released(make_client: MakeClient, fake: FakeUpstream) -> None:
    script = Script(hold_after=2)
    fake.script(script)
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            stream = await start(client)
            received = [await anext(stream) for _ in range(3)]  # role chunk + 2 texts
            assert text_of(received) == "".join(DEFAULT_CHUNKS[:2])
            await anyio.wait_all_tasks_blocked()
            assert fake.completed == 0 and fake.open_streams == 1  # held, not ended
            script.release.set()  # from the test's thread, as a browser test does
            received += [chunk async for chunk in stream]
    assert text_of(received) == "".join(DEFAULT_CHUNKS)
    await fake.wait_for(lambda f: f.completed == 1 and f.open_streams == 0)


@pytest.mark.anyio
async def test_cancelled_reader_in_stall(make_client: MakeClient, fake: FakeUpstream) -> None:
    """A reader blocked in a stall is cancelled (as when a browser leaves), then closes."""
    fake.script(Script(stall_after=1))
    got_first = anyio.Event()
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            stream = await start(client)

            async def read() -> None:
                async for chunk in stream:
                    if text_of([chunk]):
                        got_first.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(read)
                await got_first.wait()
                tg.cancel_scope.cancel()
            await stream.close()
            await fake.wait_for(lambda f: f.client_closed == 1 and f.open_streams == 0)


@pytest.mark.anyio
async def test_endless_stream_until_client_leaves(
    make_client: MakeClient, fake: FakeUpstream
) -> None:
    fake.script(Script(endless=True))
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            stream = await start(client)
            received = [await anext(stream) for _ in range(40)]
            await stream.close()
            await fake.wait_for(lambda f: f.client_closed == 1 and f.open_streams == 0)
    assert text_of(received).startswith("".join(DEFAULT_CHUNKS) * 3)


@pytest.mark.anyio
async def test_max_open_streams_counts_concurrency(
    make_client: MakeClient, fake: FakeUpstream
) -> None:
    fake.default = Script(stall_after=1)
    streams: list[openai.AsyncStream[ChatCompletionChunk]] = []
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            for _ in range(3):
                streams.append(await start(client))
            for stream in streams:
                await anext(stream)
            await fake.wait_for(lambda f: f.open_streams == 3)
            for stream in streams:
                await stream.close()
            await fake.wait_for(lambda f: f.open_streams == 0)
    assert fake.max_open_streams == 3
    assert fake.client_closed == 3


@pytest.mark.anyio
async def test_queue_then_default_and_responder(
    make_client: MakeClient, fake: FakeUpstream
) -> None:
    fake.script(Script(chunks=["one"]), Script(chunks=["two"]))
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            texts = [text_of([c async for c in await start(client)]) for _ in range(3)]
            fake.script(Script(status=500))
            fake.responder = lambda body: Script(chunks=[body["messages"][0]["content"]])
            echoed = text_of([c async for c in await start(client)])
    assert texts == ["one", "two", "".join(DEFAULT_CHUNKS)]
    assert echoed == "Begin."  # the responder wins over the queue and leaves it alone
    assert len(fake.requests) == 4


@pytest.mark.anyio
async def test_models_and_unknown_paths(make_client: MakeClient) -> None:
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            models = [m.id async for m in client.models.list()]
            with pytest.raises(openai.NotFoundError):
                await client.embeddings.create(model="m", input="x")
    assert models == ["fake-model"]


@pytest.mark.anyio
async def test_server_shutdown_ends_stalled_stream(fake: FakeUpstream) -> None:
    fake.script(Script(stall_after=1))
    with anyio.fail_after(LIMIT):
        async with AsyncOpenAI(api_key="test", base_url="http://unused/", max_retries=0) as client:
            with serve(fake) as url:
                stream = await client.with_options(base_url=url).chat.completions.create(
                    model="m", messages=MESSAGES, stream=True
                )
                await anext(stream)
            # Leaving serve() must not hang on the stalled body; the client sees it cut.
            with pytest.raises(openai.APIConnectionError):
                async for _ in stream:
                    pass
    assert fake.dropped == 1
    assert fake.open_streams == 0


@pytest.mark.anyio
async def test_connection_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # closed again below, so nothing listens there
    with anyio.fail_after(LIMIT):
        async with AsyncOpenAI(
            api_key="test", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0
        ) as client:
            with pytest.raises(openai.APIConnectionError) as caught:
                await start(client)
    assert isinstance(caught.value.__cause__, httpx2.ConnectError)


def test_runs_as_a_process() -> None:
    command = [sys.executable, "-m", "tests.fake_upstream", "--tokens", "3", "--rate", "1000"]
    root = Path(__file__).resolve().parent.parent
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            assert line.startswith("listening http://127.0.0.1:")
            url = line.removeprefix("listening ")
            with openai.OpenAI(api_key="test", base_url=url, max_retries=0) as client:
                stream = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
                text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            assert text == "".join(DEFAULT_CHUNKS[:3])
        finally:
            proc.terminate()
            assert proc.wait(timeout=LIMIT) == 0


@pytest.mark.anyio
async def test_one_at_a_time_a_new_request_cuts_the_running_stream(
    make_client: MakeClient, fake: FakeUpstream
) -> None:
    """As llama.cpp's server: the running stream ends early with no finish reason (after its
    role chunk, every second time with a `[DONE]`); the newcomer is served in full."""
    fake.one_at_a_time = True
    fake.default = Script(chunk_delay_s=0.05)
    cut: list[list[ChatCompletionChunk]] = []
    with anyio.fail_after(LIMIT):
        async with make_client() as client:
            for _ in range(2):
                first = await start(client)
                received = [await anext(first.__aiter__()) for _ in range(3)]
                # The second request arrives while the first still streams.
                second = [chunk async for chunk in await start(client)]
                received += [chunk async for chunk in first]
                cut.append(received)
                assert text_of(second) == "".join(DEFAULT_CHUNKS)
                assert second[-1].choices[0].finish_reason == "stop"
        await fake.wait_for(lambda f: f.open_streams == 0)
    for received in cut:
        assert received[0].choices[0].delta.role == "assistant"
        assert all(c.choices[0].finish_reason is None for c in received if c.choices)
        assert len(text_of(received)) < len("".join(DEFAULT_CHUNKS))
    assert fake.cut == 2 and fake.completed == 2


@pytest.mark.anyio
async def test_scripted_and_read_over_http_when_it_runs_as_a_process(fake: FakeUpstream) -> None:
    """The /_fake/ control paths, for a fake in another process: a held stream is counted open
    until released, the counters reset, and a bad script is refused."""
    with serve(fake) as url, anyio.fail_after(LIMIT):
        async with httpx2.AsyncClient(base_url=f"{url}/_fake/") as control:
            held = {"chunks": ["a", "b", "c"], "hold_after": 1}
            response = await control.post("script", json={"default": held, "queue": [{}]})
            assert response.status_code == 200
            async with AsyncOpenAI(api_key="test", base_url=url, max_retries=0) as client:
                assert text_of([c async for c in await start(client)]) == "".join(DEFAULT_CHUNKS)
                stream = await start(client)  # the default now: held after "a"
                received = [await anext(stream) for _ in range(2)]
                state = (await control.get("state")).json()
                assert (state["open_streams"], state["max_open_streams"]) == (1, 1)
                assert (await control.post("release")).status_code == 200
                received += [chunk async for chunk in stream]
            assert text_of(received) == "abc"
            await fake.wait_for(lambda f: f.completed == 2 and f.open_streams == 0)
            requests = (await control.get("requests")).json()
            assert [r["model"] for r in requests] == ["m-1", "m-1"]
            assert (await control.post("reset")).json() == {
                "requests": 0, "open_streams": 0, "max_open_streams": 0, "completed": 0,
                "client_closed": 0, "dropped": 0, "cut": 0,
            }  # fmt: skip
            assert fake.default.chunks == list(DEFAULT_CHUNKS)
            refused = await control.post("script", json={"default": {"release": True}})
            assert refused.status_code == 400
            assert (await control.post("script", json={"queue": [{"nope": 1}]})).status_code == 400


@pytest.mark.anyio
async def test_release_reaches_a_queued_script_a_request_already_took(fake: FakeUpstream) -> None:
    with serve(fake) as url, anyio.fail_after(LIMIT):
        async with httpx2.AsyncClient(base_url=f"{url}/_fake/") as control:
            queued = {"chunks": ["a", "b"], "hold_after": 1}
            assert (await control.post("script", json={"queue": [queued]})).status_code == 200
            async with AsyncOpenAI(api_key="test", base_url=url, max_retries=0) as client:
                stream = await start(client)  # takes the queued script: held after "a"
                received = [await anext(stream) for _ in range(2)]
                await fake.wait_for(lambda f: f.open_streams == 1)
                assert (await control.post("release")).status_code == 200
                received += [chunk async for chunk in stream]
    assert text_of(received) == "ab"
