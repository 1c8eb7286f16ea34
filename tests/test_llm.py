"""The model layer: deadlines close the upstream, retries honour Retry-After, faults are typed."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx2
import openai
import pytest

from server import llm, watch
from server import model as models
from server.generators import scenario
from server.generators.bank import load_bank
from server.generators.journey import Journey, Prompt
from server.generators.offline import OfflineWriter
from server.settings import Settings
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, Script, serve

pytestmark = pytest.mark.anyio

JOURNEY = Journey("finance", "Money", ("Risk tolerance", "Long-term thinking"), seed=7)
PROMPT = scenario.build(JOURNEY, max_tokens=123)


class Sleeps:
    """Records backoff waits instead of sleeping, so no test depends on the clock."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def fake() -> FakeUpstream:
    return FakeUpstream()


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(
        llm={"base_url": "http://upstream.test/v1", "model": "fake-model"},
        limits={"first_token_timeout_s": 0.5, "chunk_timeout_s": 0.5, "max_attempts": 3},
    )


def model_for(
    settings: Settings,
    transport: httpx2.AsyncBaseTransport | None,
    sleeps: Sleeps | None = None,
    client: openai.AsyncOpenAI | None = None,
    **kw: Any,
) -> llm.OpenAIModel:
    """The model under test; pass `client` (from llm.build_client) to close it afterwards."""
    return llm.OpenAIModel(
        client or llm.build_client(settings, transport),
        name=settings.llm.model,
        deadlines=models.Deadlines.from_settings(settings),
        max_tokens_param=kw.pop("max_tokens_param", settings.llm.max_tokens_param),
        sleep=sleeps or Sleeps(),
        jitter=lambda: 0.5,
        **kw,
    )


async def run(
    model: llm.OpenAIModel, prompt: Prompt = PROMPT, budget_s: float = 5.0
) -> list[models.Delta]:
    deltas = []
    with anyio.fail_after(budget_s + 10):
        stream: AsyncIterator[models.Delta] = model.stream(
            prompt, deadline=time.monotonic() + budget_s
        )
        async for delta in stream:
            deltas.append(delta)
    return deltas


async def closed(fake: FakeUpstream) -> None:
    """The app gave up on the upstream: no body left open."""
    await fake.wait_for(lambda f: f.open_streams == 0, timeout=5)


async def test_a_stream_yields_text_and_ends_with_its_finish_reason(
    fake: FakeUpstream, settings: Settings
) -> None:
    deltas = await run(model_for(settings, fake.transport()))
    assert "".join(d.text for d in deltas) == "You stand at a fork in a quiet road as night falls."
    assert deltas[-1].finish_reason == "stop"
    assert all(d.finish_reason is None for d in deltas[:-1])
    body = fake.requests[0]
    assert body["stream"] is True and body["model"] == "fake-model"
    assert body["max_tokens"] == 123
    assert body["messages"] == list(PROMPT.messages)
    # Read to its end, so the keep-alive connection can be reused.
    assert fake.completed == 1 and fake.client_closed == 0


async def test_the_token_limit_parameter_name_is_a_setting(
    fake: FakeUpstream, settings: Settings
) -> None:
    await run(model_for(settings, fake.transport(), max_tokens_param="max_completion_tokens"))
    assert fake.requests[0]["max_completion_tokens"] == 123
    assert "max_tokens" not in fake.requests[0]


async def test_length_finish_counts_as_complete(fake: FakeUpstream, settings: Settings) -> None:
    fake.script(Script(finish_reason="length"))
    deltas = await run(model_for(settings, fake.transport()))
    assert deltas[-1].finish_reason == "length"


async def test_usage_and_role_chunks_with_empty_choices_are_not_malformed(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.script(Script(usage_chunk=True, empty_first_chunk=True))
    deltas = await run(model_for(settings, fake.transport()))
    assert deltas[-1].finish_reason == "stop"


async def test_first_token_deadline_closes_upstream_then_retries(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.script(Script(first_delay_s=30), Script())
    sleeps = Sleeps()
    deltas = await run(model_for(settings, fake.transport(), sleeps))
    assert deltas[-1].finish_reason == "stop"
    assert len(fake.requests) == 2
    await closed(fake)
    assert fake.client_closed == 1  # the stalled attempt; the good one was read to its end
    assert fake.completed == 1
    assert len(sleeps.waits) == 1


async def test_first_token_deadline_on_every_attempt_is_a_typed_error(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.default = Script(first_delay_s=30)
    with pytest.raises(models.FirstTokenTimeout) as caught:
        await run(model_for(settings, fake.transport()))
    assert caught.value.attempts == 3
    assert len(fake.requests) == 3
    await closed(fake)
    assert fake.client_closed == 3


async def test_stall_before_headers_is_a_first_token_timeout(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.default = Script(headers_delay_s=30)
    with pytest.raises(models.FirstTokenTimeout):
        await run(model_for(settings, fake.transport()))


async def test_between_chunk_deadline_closes_upstream(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.script(Script(stall_after=3))
    seen: list[str] = []
    with pytest.raises(models.ChunkTimeout):
        with anyio.fail_after(10):
            async for delta in model_for(settings, fake.transport()).stream(
                PROMPT, deadline=time.monotonic() + 5
            ):
                seen.append(delta.text)
    assert "".join(seen) == "You stand at "
    await closed(fake)
    assert fake.client_closed == 1
    assert len(fake.requests) == 1  # no retry once text was shown


async def test_whole_step_deadline_ends_a_trickle(fake: FakeUpstream, settings: Settings) -> None:
    fake.script(Script(chunk_delay_s=0.3, endless=True))
    started = time.monotonic()
    with pytest.raises(models.StepTimeout):
        await run(model_for(settings, fake.transport()), budget_s=1.5)
    assert time.monotonic() - started < 1.5 + 2  # the deadline fired
    await closed(fake)
    assert fake.client_closed == 1


async def test_an_endless_stream_ends_at_the_step_deadline(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.script(Script(endless=True, chunk_delay_s=0.01))
    with pytest.raises(models.StepTimeout):
        await run(model_for(settings, fake.transport()), budget_s=1.0)
    await closed(fake)


async def test_429_waits_for_retry_after_then_succeeds(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.script(Script(status=429, retry_after="1"), Script())
    sleeps = Sleeps()
    deltas = await run(model_for(settings, fake.transport(), sleeps))
    assert deltas[-1].finish_reason == "stop"
    assert sleeps.waits == [1.0]


async def test_429_with_retry_after_past_the_budget_fails_at_once(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.script(Script(status=429, retry_after="120"))
    sleeps = Sleeps()
    with pytest.raises(models.RateLimited) as caught:
        await run(model_for(settings, fake.transport(), sleeps), budget_s=5)
    assert sleeps.waits == []
    assert caught.value.attempts == 1
    assert len(fake.requests) == 1


async def test_500_on_every_try_backs_off_then_fails(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.default = Script(status=500)
    sleeps = Sleeps()
    with pytest.raises(models.UpstreamStatus) as caught:
        await run(model_for(settings, fake.transport(), sleeps))
    assert len(fake.requests) == 3
    assert caught.value.attempts == 3
    # Exponential with jitter pinned at the middle: 0.75 x 0.5 s, then 0.75 x 1 s.
    assert sleeps.waits == [pytest.approx(0.375), pytest.approx(0.75)]


async def test_a_client_error_is_not_retried(fake: FakeUpstream, settings: Settings) -> None:
    fake.script(Script(status=400))
    with pytest.raises(models.UpstreamStatus) as caught:
        await run(model_for(settings, fake.transport()))
    assert len(fake.requests) == 1
    # The SDK's own status error, with the upstream's message from the error body.
    assert caught.value.detail.startswith("400 from upstream: Error code: 400")
    assert "Invalid request body (fake)." in caught.value.detail


async def test_the_request_carries_the_sdk_s_headers(
    fake: FakeUpstream, settings: Settings
) -> None:
    """The request is built from the client's own URL and headers, not by the SDK's `post`."""
    keyed = settings.model_copy(update={"api_key": "sk-test-key"})
    await run(model_for(keyed, fake.transport()))
    await run(model_for(keyed, fake.transport()))
    assert len(fake.request_headers) == 2
    for headers in fake.request_headers:
        assert headers["authorization"] == "Bearer sk-test-key"
        assert headers["content-type"] == "application/json"
        assert headers["user-agent"].startswith("AsyncOpenAI/Python")
        assert headers["x-stainless-lang"] == "python"


async def test_a_connection_dropped_after_text_is_an_incomplete_stream_not_retried(
    fake: FakeUpstream, settings: Settings
) -> None:
    """Regression: a real model's stream cut after 496 characters was reported as "could not
    be reached"; what happened is that it stopped mid-answer."""
    fake.script(Script(drop_after=4))
    with pytest.raises(models.IncompleteStream) as caught:
        await run(model_for(settings, fake.transport()))
    assert "broke off mid-answer" in caught.value.detail
    assert len(fake.requests) == 1


async def test_a_malformed_chunk_is_a_typed_error(fake: FakeUpstream, settings: Settings) -> None:
    fake.script(Script(malformed_at=2))
    with pytest.raises(models.MalformedChunk):
        await run(model_for(settings, fake.transport()))
    await closed(fake)


async def test_a_malformed_first_chunk_is_a_typed_error(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.script(Script(malformed_at=0))
    with pytest.raises(models.MalformedChunk):
        await run(model_for(settings, fake.transport()))


@pytest.mark.parametrize(
    "script",
    [
        Script(close_without_finish=True),
        Script(finish_reason=None, send_done=True),
    ],
    ids=["closed-early", "no-finish-reason"],
)
async def test_a_stream_without_finish_reason_is_never_complete(
    fake: FakeUpstream, settings: Settings, script: Script
) -> None:
    fake.script(script)
    with pytest.raises(models.IncompleteStream):
        await run(model_for(settings, fake.transport()))


async def test_nothing_listening_is_a_connection_error_after_retries(settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    real = settings.model_copy(
        update={"llm": settings.llm.model_copy(update={"base_url": f"http://127.0.0.1:{port}/v1"})}
    )
    sleeps = Sleeps()
    client = llm.build_client(real)
    model = model_for(real, None, sleeps, client=client)
    with pytest.raises(models.ConnectionFailed) as caught:
        await run(model)
    await client.close()
    assert caught.value.attempts == 3
    assert len(sleeps.waits) == 2


async def test_over_real_http_the_first_token_deadline_closes_the_connection(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.default = Script(first_delay_s=30)
    with serve(fake) as url:
        real = settings.model_copy(
            update={"llm": settings.llm.model_copy(update={"base_url": url})}
        )
        client = llm.build_client(real)
        model = model_for(real, None, client=client)
        with pytest.raises(models.FirstTokenTimeout):
            await run(model)
        await fake.wait_for(lambda f: f.client_closed == 3 and f.open_streams == 0, timeout=10)
        await client.close()


async def test_over_real_http_a_stall_mid_stream_closes_the_connection(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.default = Script(stall_after=2)
    with serve(fake) as url:
        real = settings.model_copy(
            update={"llm": settings.llm.model_copy(update={"base_url": url})}
        )
        client = llm.build_client(real)
        model = model_for(real, None, client=client)
        with pytest.raises(models.ChunkTimeout):
            await run(model)
        await fake.wait_for(lambda f: f.client_closed == 1 and f.open_streams == 0, timeout=10)
        await client.close()


async def test_a_consumer_that_leaves_closes_the_upstream(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.script(Script(endless=True, chunk_delay_s=0.01))
    model = model_for(settings, fake.transport())
    with anyio.fail_after(10):
        stream = model.stream(PROMPT, deadline=time.monotonic() + 30)
        async for _ in stream:
            break
        await stream.aclose()
    await closed(fake)
    assert fake.client_closed == 1


async def test_the_offline_model_types_at_its_pace_or_delivers_at_once() -> None:
    writer = OfflineWriter(load_bank())
    paced = models.OfflineModel(writer, chars_per_s=100000.0)
    deltas = await run_offline(paced)
    at_once = await run_offline(paced.at_once())
    assert len(deltas) > 20
    assert len(at_once) == 1
    assert "".join(d.text for d in deltas) == at_once[0].text == writer.write(JOURNEY, "scenario")
    assert deltas[-1].finish_reason == at_once[0].finish_reason == "stop"
    assert not paced.live


async def run_offline(model: models.OfflineModel) -> list[models.Delta]:
    with anyio.fail_after(10):
        return [d async for d in model.stream(PROMPT, deadline=time.monotonic() + 10)]


async def test_the_client_has_sdk_retries_off_and_explicit_timeouts(settings: Settings) -> None:
    client = llm.build_client(settings)
    assert client.max_retries == 0
    assert isinstance(client.timeout, httpx2.Timeout)
    assert client.timeout.read is not None and client.timeout.read < 600
    await client.close()


async def test_a_stop_from_outside_is_not_taken_for_a_chunk_timeout(
    fake: FakeUpstream, settings: Settings
) -> None:
    """Cancelling the consumer mid-stream (a person pressing stop) must cancel, not turn into
    a ChunkTimeout that would fall back and write a step nobody asked for."""
    fake.script(Script(stall_after=2))
    model = model_for(settings, fake.transport())
    seen: list[str] = []
    with anyio.move_on_after(0.2) as scope:  # well before the 0.5 s chunk deadline
        async for delta in model.stream(PROMPT, deadline=time.monotonic() + 5):
            seen.append(delta.text)
    assert scope.cancelled_caught
    assert "".join(seen) == "You stand "
    await closed(fake)


async def test_a_connection_dropped_before_the_first_token_is_retried(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.script(Script(drop_after=0), Script())
    sleeps = Sleeps()
    heard = Heard()
    model = model_for(settings, fake.transport(), sleeps)
    with anyio.fail_after(15):
        stream = model.stream(PROMPT, deadline=time.monotonic() + 5, watcher=heard)
        deltas = [delta async for delta in stream]
    assert deltas[-1].finish_reason == "stop"
    assert len(fake.requests) == 2 and len(sleeps.waits) == 1
    # A body that broke off is a cut stream (a sign of overload), not an unreachable model.
    assert [a.outcome for a in heard.attempts] == ["incomplete_stream", "ok"]


class Heard:
    """A watcher that records each attempt and each wait before a retry."""

    def __init__(self) -> None:
        self.attempts: list[watch.Attempt] = []
        self.retried_after: list[int] = []

    def ended(self, attempt: watch.Attempt) -> None:
        self.attempts.append(attempt)

    async def before_retry(self, attempt: watch.Attempt) -> None:
        self.retried_after.append(attempt.number)


async def run_watched(model: llm.OpenAIModel, heard: Heard) -> list[models.Delta]:
    with anyio.fail_after(15):
        stream = model.stream(PROMPT, deadline=time.monotonic() + 5, watcher=heard)
        return [delta async for delta in stream]


async def test_the_watcher_hears_every_attempt_and_the_wait_before_each_retry(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.script(Script(first_delay_s=30), Script(status=429, retry_after="0"), Script())
    heard = Heard()
    deltas = await run_watched(model_for(settings, fake.transport()), heard)
    assert deltas[-1].finish_reason == "stop"
    outcomes = [(a.number, a.of, a.outcome) for a in heard.attempts]
    assert outcomes == [(1, 3, "first_token_timeout"), (2, 3, "rate_limited"), (3, 3, "ok")]
    assert heard.attempts[0].retry_in_s == pytest.approx(0.375)
    assert heard.attempts[1].retry_in_s == 0.0
    assert heard.attempts[2].retry_in_s is None
    assert heard.attempts[0].first_token_s is None
    first_token_s = heard.attempts[2].first_token_s
    assert first_token_s is not None and first_token_s >= 0
    assert heard.retried_after == [1, 2]


async def test_the_watcher_hears_the_last_failure_and_a_cut_after_text(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.script(Script(status=500), Script(drop_after=3))
    heard = Heard()
    with pytest.raises(models.IncompleteStream) as caught:
        await run_watched(model_for(settings, fake.transport()), heard)
    assert caught.value.attempts == 2
    assert [a.outcome for a in heard.attempts] == ["upstream_status", "incomplete_stream"]
    assert heard.attempts[-1].retry_in_s is None
    assert heard.attempts[-1].first_token_s is not None


async def test_a_consumer_that_leaves_is_heard_as_cancelled(
    fake: FakeUpstream, settings: Settings
) -> None:
    fake.script(Script(endless=True, chunk_delay_s=0.01))
    heard = Heard()
    stream = model_for(settings, fake.transport()).stream(
        PROMPT, deadline=time.monotonic() + 30, watcher=heard
    )
    with anyio.fail_after(10):
        async for _ in stream:
            break
        await stream.aclose()
    assert [a.outcome for a in heard.attempts] == ["cancelled"]
