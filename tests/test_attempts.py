"""Attempts told truly: each one stored, counted and logged, the status says a retry is waiting,
and the person can take the prepared text instead of waiting (over real HTTP)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from server.app import create_app
from server.settings import Settings
from server.store import open_store
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.servers import serve_app
from tests.sse import Stream
from tests.visitor import Visitor

# Attempts are stored, and a retry waits in admission: on both backends.
pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

WORDS = [f"word{i} " for i in range(12)]
RETRY_WAIT = "asking again (2 of 3)"
CHOSE = "You chose not to wait for the model"
SHOWN = re.compile(r'data-role="text"[\s\S]*?word0')


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream(Script(chunks=WORDS))
    with serve(fake) as url:
        yield fake, url


def settings_for(make_settings: SettingsFactory, url: str, **limits: Any) -> Settings:
    return make_settings(
        llm={"base_url": url, "model": "fake-model"},
        limits={
            "first_token_timeout_s": 0.5,
            "chunk_timeout_s": 2.0,
            "worker_time_limit_s": 60.0,
            "max_attempts": 3,
            **limits,
        },
        journey={"questions_per_session": 2},
    )


def first_scenario(script: Script) -> Callable[[dict[str, Any]], Script]:
    """`script` for the first scenario request; every other request is answered normally."""
    seen: list[int] = []

    def respond(request: dict[str, Any]) -> Script:
        if "decision scenario" in request["messages"][1]["content"] and not seen:
            seen.append(1)
            return script
        return Script(chunks=WORDS)

    return respond


def scenario_requests(fake: FakeUpstream) -> int:
    return sum("decision scenario" in r["messages"][1]["content"] for r in fake.requests)


def sample(metrics: str, name: str, **labels: str) -> float:
    inner = ",".join(f'{key}="{value}"' for key, value in labels.items())
    match = re.search(rf"^{name}\{{{inner}\}} (\S+)$", metrics, re.M)
    return float(match.group(1)) if match else 0.0


async def test_a_retry_that_succeeds_is_stored_counted_logged_and_told(
    make_settings: SettingsFactory,
    upstream: tuple[FakeUpstream, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, url = upstream
    fake.responder = first_scenario(Script(chunks=WORDS, first_delay_s=30))
    settings = settings_for(make_settings, url)
    caplog.set_level(logging.INFO, logger="crossroads")
    with serve_app(create_app(settings)) as base:
        async with Visitor(base) as visitor:
            sid = await visitor.start("finance")
            with anyio.fail_after(20):
                stream = await visitor.stream(sid, 0)
                await visitor.stream(sid, 1)  # let the next step finish before stopping
            metrics = (await visitor.http.get("/metrics")).text
    assert stream.names()[-1] == "done"
    assert 'data-source="model"' in stream.events[-1].data
    statuses = [event.data for event in stream.of("status")]
    assert f"The model is slow; {RETRY_WAIT}" in statuses, statuses
    assert statuses[-1] == "writing"  # said again once the retry's text came
    assert scenario_requests(fake) == 2

    store = await open_store(settings)
    try:
        step = await store.step(sid, 0)
    finally:
        await store.close()
    assert step is not None and step.attempts == 2

    attempts = "crossroads_model_attempts_total"
    assert sample(metrics, attempts, outcome="first_token_timeout") == 1
    assert sample(metrics, attempts, outcome="ok") == 2  # the retry and question 1
    retried = [r for r in caplog.records if r.getMessage() == "Model call retried"]
    assert len(retried) == 1
    fields = retried[0].fields  # type: ignore[attr-defined]
    assert (fields["reason"], fields["attempt"], fields["of"]) == ("first_token_timeout", 2, 3)
    assert fields["session_id"] == sid and fields["step"] == 0


async def wait_for_page(visitor: Visitor, sid: str, pattern: re.Pattern[str]) -> str:
    """The session page once it matches `pattern` (polled: a person reloading)."""
    with anyio.fail_after(10):
        while True:
            page = (await visitor.http.get(f"/s/{sid}")).text
            if pattern.search(page):
                return page
            await anyio.sleep(0.05)


@pytest.mark.parametrize("htmx", [False, True], ids=["no-js", "htmx"])
async def test_the_person_can_take_the_prepared_text_while_a_retry_waits(
    make_settings: SettingsFactory, upstream: tuple[FakeUpstream, str], htmx: bool
) -> None:
    fake, url = upstream
    # The upstream asks for 20 s: without the button the person would wait that long.
    fake.responder = first_scenario(Script(status=429, retry_after="20"))
    settings = settings_for(make_settings, url)
    with serve_app(create_app(settings)) as base:
        async with Visitor(base) as visitor:
            sid = await visitor.start("finance")
            page = await wait_for_page(visitor, sid, re.compile(re.escape(RETRY_WAIT)))
            assert f"The model is busy; {RETRY_WAIT}" in page
            form = re.search(r'<form[^>]*action="[^"]*/steps/0/fallback"[^>]*>', page)
            assert form is not None and " hidden" not in form.group(0)

            action = f"/s/{sid}/steps/0/fallback"
            forged = await visitor.http.post(action, data={"csrf_token": "forged"})
            assert forged.status_code == 403
            headers = {"HX-Request": "true"} if htmx else {}
            with anyio.fail_after(10):
                taken = await visitor.http.post(
                    action, data={"csrf_token": visitor.token}, headers=headers
                )
                stream = await visitor.stream(sid, 0)
            metrics = (await visitor.http.get("/metrics")).text
    if htmx:
        assert taken.status_code == 200
        assert 'id="step-0"' in taken.text and 'data-source="offline"' in taken.text
        assert CHOSE in taken.text
    else:
        assert taken.status_code == 303
        assert taken.headers["location"] == f"/s/{sid}"
    assert stream.names()[-1] == "done"
    done = stream.events[-1].data
    assert 'data-source="offline"' in done
    assert f"{CHOSE}, so this is a prepared scenario." in done
    assert scenario_requests(fake) == 1  # the retry was never sent
    fallbacks = "crossroads_fallbacks_total"
    assert sample(metrics, fallbacks, reason="chose_prepared", tier="offline") == 1
    assert sample(metrics, "crossroads_terminations_total", reason="chose_prepared") == 0


async def test_once_the_model_writes_the_button_leaves_the_step_alone(
    make_settings: SettingsFactory, upstream: tuple[FakeUpstream, str]
) -> None:
    fake, url = upstream
    fake.responder = first_scenario(Script(chunks=WORDS, chunk_delay_s=0.1))
    settings = settings_for(make_settings, url)
    with serve_app(create_app(settings)) as base:
        async with Visitor(base) as visitor:
            sid = await visitor.start("finance")
            await wait_for_page(visitor, sid, SHOWN)
            with anyio.fail_after(20):
                taken = await visitor.http.post(
                    f"/s/{sid}/steps/0/fallback", data={"csrf_token": visitor.token}
                )
                stream: Stream = await visitor.stream(sid, 0)
    assert taken.status_code == 303
    assert 'data-source="model"' in stream.events[-1].data
    assert CHOSE not in stream.events[-1].data


async def test_a_person_in_the_queue_can_take_the_prepared_text_too(
    make_settings: SettingsFactory, upstream: tuple[FakeUpstream, str]
) -> None:
    fake, url = upstream
    # The first scenario holds the only slot (no first token for 30 s); the second waits.
    fake.responder = first_scenario(Script(chunks=WORDS, first_delay_s=30))
    settings = settings_for(
        make_settings,
        url,
        max_concurrent_ai_requests=1,
        adaptive_concurrency=False,
        queue_timeout_s=20.0,
        first_token_timeout_s=20.0,
    )
    with serve_app(create_app(settings)) as base:
        async with Visitor(base) as visitor:
            holder = await visitor.start("finance")
            await fake.wait_for(lambda f: f.open_streams == 1)
            sid = await visitor.start("career")
            queued = re.compile(
                r"In the queue: you are next; the model is writing 1 answer at a time"
            )
            page = await wait_for_page(visitor, sid, queued)
            form = re.search(r'<form[^>]*action="[^"]*/steps/0/fallback"[^>]*>', page)
            assert form is not None and " hidden" not in form.group(0)
            with anyio.fail_after(10):
                taken = await visitor.http.post(
                    f"/s/{sid}/steps/0/fallback", data={"csrf_token": visitor.token}
                )
                stream = await visitor.stream(sid, 0)
            # The holder's step is left alone.
            holder_page = (await visitor.http.get(f"/s/{holder}")).text
    assert taken.status_code == 303
    done = stream.events[-1].data
    assert 'data-source="offline"' in done and CHOSE in done
    assert scenario_requests(fake) == 1  # the one holding the slot; the queued one never asked
    assert 'id="step-0"' in holder_page and "is-live" in holder_page
