"""The live step tells the truth about its connection, in Chromium: a cut connection and a
silent one show "reconnecting", then "back", and the text resumes whole; a silent model (the
connection alive, heartbeats arriving) is never mistaken for a lost connection."""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from server.app import create_app
from tests.conftest import SettingsFactory
from tests.cutproxy import cut_proxy
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.servers import serve_app

pytestmark = pytest.mark.browser

WAIT_MS = 20000
HEARTBEAT_S = 0.5
# Every state a live step shows, in order, with the status line's text at that moment.
STATES = """
window.__states = [];
new MutationObserver((records) => {
  for (const r of records) {
    const el = r.target;
    if (r.attributeName === 'data-state' && el.matches('[data-stream]')) {
      const text = el.querySelector('[data-role="status-text"]');
      window.__states.push([el.id, el.getAttribute('data-state'), text ? text.textContent : '']);
    }
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-state']});
"""


def states(page: Page, step: str = "step-0") -> list[str]:
    found: list[list[str]] = page.evaluate("window.__states")
    return [state for sid, state, _ in found if sid == step]


def status_texts(page: Page) -> list[str]:
    found: list[list[str]] = page.evaluate("window.__states")
    return [text for _, _, text in found]


def start(page: Page, base: str, category: str) -> None:
    page.goto(base + "/")
    page.get_by_role("button", name=re.compile(category)).click()
    page.wait_for_url(re.compile(r"/s/[\w-]+$"))


def words(text: str) -> list[str]:
    return text.split()


@pytest.mark.both_backends  # the page over the store and the broker (tests/databases.py)
def test_a_cut_connection_shows_reconnecting_then_back_and_the_text_resumes_whole(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    settings = make_settings(
        offline={"chars_per_s": 150.0},
        stream={"heartbeat_s": HEARTBEAT_S, "abandon_grace_s": 15.0},
    )
    context.add_init_script(STATES)
    with serve_app(create_app(settings)) as app_url, cut_proxy(app_url) as (base, proxy):
        page = context.new_page()
        start(page, base, "Career")
        live = page.locator("#step-0.is-live")
        expect(live.locator("[data-role='text']")).to_contain_text(
            re.compile(r"\w+ \w+ \w+"), timeout=WAIT_MS
        )
        expect(live).to_have_attribute("data-state", "writing")
        proxy.cut()
        expect(live).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        expect(live.locator("[data-role='status-text']")).to_contain_text("Connection lost")
        # The caret stops while nothing arrives; the text so far stays on the page.
        assert live.locator("[data-role='text']").inner_text().strip()
        time.sleep(2 * HEARTBEAT_S)
        proxy.restore()
        expect(page.locator("#step-0.is-done")).to_be_visible(timeout=WAIT_MS)
        before_done = page.evaluate("window.__beforeDone['step-0']")
        final = page.locator("#step-0 .prose").inner_text()
        seen = states(page)
        assert page.evaluate("window.__violations") == []
    assert words(before_done) == words(final)
    assert "reconnecting" in seen and "back" in seen[seen.index("reconnecting") :], seen
    assert any(text.startswith("Connected again") for text in status_texts(page)), seen


def test_a_silent_connection_is_noticed_after_two_heartbeats_and_reconnected(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    settings = make_settings(
        offline={"chars_per_s": 150.0},
        stream={"heartbeat_s": HEARTBEAT_S, "abandon_grace_s": 15.0},
    )
    context.add_init_script(STATES)
    with serve_app(create_app(settings)) as app_url, cut_proxy(app_url) as (base, proxy):
        page = context.new_page()
        start(page, base, "Family")
        live = page.locator("#step-0.is-live")
        expect(live.locator("[data-role='text']")).to_contain_text(
            re.compile(r"\w+ \w+ \w+"), timeout=WAIT_MS
        )
        proxy.freeze_streams()  # held open, nothing more arrives: no error is ever raised
        expect(live).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        # The page reconnects by itself (the frozen connection is dropped) and finishes.
        expect(page.locator("#step-0.is-done")).to_be_visible(timeout=WAIT_MS)
        before_done = page.evaluate("window.__beforeDone['step-0']")
        final = page.locator("#step-0 .prose").inner_text()
        seen = states(page)
    assert words(before_done) == words(final)
    assert "back" in seen[seen.index("reconnecting") :], seen


def test_a_silent_model_is_waiting_not_a_lost_connection_and_the_fallback_is_said(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    upstream = FakeUpstream(Script(first_delay_s=60))
    context.add_init_script(STATES)
    with serve(upstream) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url},
            # Four heartbeats or more of a silent model before the fallback.
            limits={"first_token_timeout_s": 4 * HEARTBEAT_S + 1, "max_attempts": 1},
            stream={"heartbeat_s": HEARTBEAT_S},
        )
        with serve_app(create_app(settings)) as base:
            page = context.new_page()
            start(page, base, "Ethics")
            expect(page.locator("#step-0.is-done")).to_be_visible(timeout=WAIT_MS)
            seen = states(page)
            texts = status_texts(page)
    assert "reconnecting" not in seen, seen
    assert "fell-back" in seen, seen
    assert any("prepared scenario" in text for text in texts), texts


def test_a_stream_that_cannot_be_opened_is_retried_until_it_opens(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    settings = make_settings(
        offline={"chars_per_s": 400.0},
        stream={"heartbeat_s": HEARTBEAT_S, "abandon_grace_s": 15.0},
    )
    context.add_init_script(STATES)
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        blocked = {"on": True}

        def stream_route(route: object) -> None:
            if blocked["on"]:
                route.abort()  # type: ignore[attr-defined]
            else:
                route.continue_()  # type: ignore[attr-defined]

        page.route("**/steps/0/stream", stream_route)
        start(page, base, "Health")
        live = page.locator("#step-0.is-live")
        expect(live).to_have_attribute("data-state", "reconnecting", timeout=WAIT_MS)
        blocked["on"] = False
        expect(page.locator("#step-0.is-done")).to_be_visible(timeout=WAIT_MS)
        assert "reconnecting" in states(page)


def test_a_queued_step_says_its_place_then_writes(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    held = Script(hold_after=2)
    upstream = FakeUpstream(Script())
    upstream.script(held)  # the first journey's scenario holds the only slot
    context.add_init_script(STATES)
    with serve(upstream) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url},
            limits={
                "max_concurrent_ai_requests": 1,
                "adaptive_concurrency": False,
                "queue_timeout_s": 30.0,
                "first_token_timeout_s": 30.0,
                "chunk_timeout_s": 30.0,
                "worker_time_limit_s": 60.0,
            },
            stream={"heartbeat_s": HEARTBEAT_S, "abandon_grace_s": 15.0},
        )
        with serve_app(create_app(settings)) as base:
            first = context.new_page()
            start(first, base, "Money")
            expect(first.locator("#step-0.is-live")).to_have_attribute(
                "data-state", "writing", timeout=WAIT_MS
            )
            second = context.new_page()
            start(second, base, "Career")
            waiting = second.locator("#step-0.is-live")
            expect(waiting).to_have_attribute("data-state", "queued", timeout=WAIT_MS)
            expect(waiting.locator("[data-role='status-text']")).to_have_text(
                re.compile(r"^In the queue: you are next")
            )
            held.release.set()
            expect(second.locator("#step-0.is-done")).to_be_visible(timeout=WAIT_MS)
            seen = states(second)
    assert seen.index("queued") < seen.index("writing"), seen
    assert "reconnecting" not in seen, seen
