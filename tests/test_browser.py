"""End to end in Debian's headless Chromium: the journey, a reload mid-stream, two tabs, a fallback."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import BrowserContext, expect

from server.app import create_app
from tests.chromium import assert_no_violations, start
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.servers import serve_app

pytestmark = pytest.mark.browser


def words(text: str) -> list[str]:
    return text.split()


WORDS = [f"word{i}" for i in range(60)]
HELD = " ".join(WORDS[:5])


@contextmanager
def held_model(make_settings: SettingsFactory) -> Iterator[tuple[Script, str]]:
    """The app on a model that holds its stream after five words until `script.release` is set;
    yields the script and the app's URL. Every deadline is far off: a fallback on a busy machine
    would replace the model's text."""
    script = Script(chunks=[f"{word} " for word in WORDS], hold_after=5)
    with serve(FakeUpstream(script)) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url},
            limits={
                "first_token_timeout_s": 60.0,
                "chunk_timeout_s": 60.0,
                "worker_time_limit_s": 120.0,
                "max_attempts": 1,
            },
            # The default heartbeat: on a loaded machine a 1 s one lets the page take a stall of
            # the test process for a dead line and reconnect, which is not what these test.
            stream={"abandon_grace_s": 30.0, "heartbeat_s": 5.0},
        )
        with serve_app(create_app(settings)) as base:
            yield script, base


@pytest.mark.both_backends  # the page over the store and the broker (tests/databases.py)
def test_a_whole_journey_in_the_browser(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    settings = make_settings(journey={"questions_per_session": 3}, offline={"chars_per_s": 3000.0})
    errors: list[str] = []
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        start(page, base, "Money")
        expect(page.locator("#step-0.is-done")).to_be_visible(timeout=15000)
        expect(page.locator("#progress")).to_have_text("Question 1 of 3", timeout=15000)
        expect(page.locator("#step-1.is-done")).to_be_visible(timeout=15000)
        # Question 1: a quick reply.
        reply = page.locator("#step-1 .reply").first
        reply_text = reply.inner_text()
        reply.click()
        expect(page.locator("#step-1 .answer blockquote")).to_have_text(reply_text, timeout=15000)
        expect(page.locator("#step-2.is-done")).to_be_visible(timeout=15000)
        expect(page.locator("#progress")).to_have_text("Question 2 of 3")
        # Question 2 reacts to the answer; answer it in free text with the keyboard only.
        expect(page.locator("#step-2 .prose")).to_contain_text(reply_text.rstrip(".")[:20])
        page.locator("#step-2 textarea").fill(
            "I would wait, because I am worried about losing my savings."
        )
        page.locator("#step-2 textarea").press("Tab")
        page.keyboard.press("Enter")
        expect(page.locator("#step-3.is-done")).to_be_visible(timeout=15000)
        expect(page.locator("#step-3 .prose")).to_contain_text("worried about losing my savings")
        page.locator("#step-3 textarea").fill("Definitely invest half and keep the rest safe.")
        page.locator("#step-3 button.primary").click()
        report = page.locator("#step-4.is-done")
        expect(report).to_be_visible(timeout=15000)
        expect(report.locator("svg.score-chart")).to_be_visible()
        expect(report).to_contain_text("worried about losing my savings")
        expect(page.locator("#progress")).to_have_text("Report ready")
        page.get_by_role("link", name="Open the report page").click()
        expect(page.locator("h1")).to_contain_text("How you decide")
        assert_no_violations(page)
    assert errors == []


def test_a_streaming_question_never_shows_its_quick_reply_tail(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    settings = make_settings(journey={"questions_per_session": 2}, offline={"chars_per_s": 400.0})
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        start(page, base, "Career")
        expect(page.locator("#step-1.is-done")).to_be_visible(timeout=20000)
        expect(page.locator("#step-1 .reply").first).to_be_visible()
        assert page.evaluate("window.__beforeDone['step-1']").strip()  # the question itself showed
        assert page.evaluate("window.__sawTail") is False


@pytest.mark.both_backends  # the page over the store and the broker (tests/databases.py)
def test_a_reload_mid_stream_resumes_without_duplicated_or_lost_text(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    # The model holds its stream after a few words until the page has reloaded: the reload
    # lands mid-stream, whatever the machine's speed.
    with held_model(make_settings) as (script, base):
        page = context.new_page()
        start(page, base, "Health")
        live = page.locator("#step-0 [data-role='text']")
        expect(live).to_have_text(re.compile(HELD), timeout=15000)
        page.reload()
        expect(page.locator("#step-0.is-live [data-role='text']")).to_have_text(
            re.compile(HELD), timeout=15000
        )
        script.release.set()
        expect(page.locator("#step-0.is-done")).to_be_visible(timeout=20000)
        before_done = page.evaluate("window.__beforeDone['step-0']")
        final = page.locator("#step-0 .prose").inner_text()
    assert words(before_done) == words(final) == WORDS


@pytest.mark.both_backends  # the page over the store and the broker (tests/databases.py)
def test_a_second_tab_shows_the_same_live_text(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    # The model holds its stream after a few words until the second tab is in: that tab joins
    # while the step is still streaming, whatever the machine's speed.
    with held_model(make_settings) as (script, base):
        first = context.new_page()
        start(first, base, "Family")
        expect(first.locator("#step-0 [data-role='text']")).to_have_text(
            re.compile(HELD), timeout=15000
        )
        second = context.new_page()
        second.goto(first.url)
        # Joined live: the text so far, in a step that is not done.
        expect(second.locator("#step-0.is-live [data-role='text']")).to_have_text(
            re.compile(HELD), timeout=15000
        )
        assert second.locator("#step-0.is-done").count() == 0
        script.release.set()
        for page in (first, second):
            expect(page.locator("#step-0.is-done")).to_be_visible(timeout=20000)
        texts = [page.evaluate("window.__beforeDone['step-0']") for page in (first, second)]
        finals = [page.locator("#step-0 .prose").inner_text() for page in (first, second)]
    expected = WORDS
    assert words(texts[0]) == words(texts[1]) == words(finals[0]) == words(finals[1]) == expected


def test_a_stalled_model_falls_back_and_the_page_says_so(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    upstream = FakeUpstream(Script(first_delay_s=60))
    with serve(upstream) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url},
            limits={"first_token_timeout_s": 1.0, "max_attempts": 1},
        )
        with serve_app(create_app(settings)) as base:
            page = context.new_page()
            start(page, base, "Ethics")
            step = page.locator("#step-0.is-done")
            expect(step).to_be_visible(timeout=15000)
            expect(step.locator(".note")).to_contain_text("prepared scenario")
            assert len(words(step.locator(".prose").inner_text())) >= 120
            assert_no_violations(page)
