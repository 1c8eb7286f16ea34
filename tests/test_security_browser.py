"""Untrusted text never runs: model output and answers full of script, in headless Chromium."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from server.app import create_app
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.servers import serve_app

EVIL = [
    "You face a choice. ",
    "<script>window.__pwned = 'script'; alert(1)</script> ",
    "<img src=x onerror=\"window.__pwned = 'img'; alert(2)\"> ",
    "[press here](javascript:window.__pwned='link') ",
    '<iframe src="javascript:alert(3)"></iframe> ',
    '<a href="javascript:alert(4)">raw link</a> ',
    "**bold** and <b onmouseover=alert(5)>hover</b>.",
]
EVIL_QUESTION = [
    "Why? <script>window.__pwned='q'</script>\n\n",
    "Quick replies:\n",
    "- <img src=x onerror=alert(6)>\n",
    "- [x](javascript:alert(7))\n",
]
EVIL_ANSWER = (
    "<script>window.__pwned='answer'</script><img src=x onerror=alert(8)> [y](javascript:alert(9))"
)


def evil(request: dict[str, Any], seen_live: threading.Event) -> Script:
    prompt = request["messages"][1]["content"]
    if "decision scenario" in prompt:
        # Held after the script tag until the test has seen it in the live text: however slow
        # the page is to open, the step is still being written when it looks.
        return Script(chunks=EVIL, chunk_delay_s=0.05, hold_after=2, release=seen_live)
    if "follow-up question" in prompt:
        return Script(chunks=EVIL_QUESTION, chunk_delay_s=0.05)
    return Script(
        chunks=["## Summary\n\n", *EVIL, "\n\n## Scores\n- Openness: 5\n"], chunk_delay_s=0.02
    )


def assert_nothing_ran(page: Page, dialogs: list[str], console: list[str]) -> None:
    assert dialogs == []
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script:not([src])").count() == 0
    assert page.locator("[onerror], [onmouseover], iframe").count() == 0
    assert page.locator('a[href^="javascript:"]').count() == 0
    assert not [line for line in console if "pwned" in line]


@pytest.mark.browser
def test_model_text_and_answers_never_run_as_script(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    upstream = FakeUpstream()
    seen_live = threading.Event()
    upstream.responder = lambda request: evil(request, seen_live)
    with serve(upstream) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url},
            journey={"questions_per_session": 1},
            limits={"chunk_timeout_s": 30.0},  # the held scenario is not a stalled model
        )
        with serve_app(create_app(settings)) as base:
            context = browser.new_context()
            page = context.new_page()
            dialogs: list[str] = []
            console: list[str] = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.on("console", lambda message: console.append(message.text))
            page.goto(base + "/")
            page.get_by_role("button", name=re.compile("Relationships")).click()
            live = page.locator("#step-0 [data-role='text']")
            expect(live).to_contain_text("<script>", timeout=10000)  # shown as text while streaming
            assert_nothing_ran(page, dialogs, console)
            seen_live.set()
            expect(page.locator("#step-0.is-done")).to_be_visible(timeout=10000)
            expect(page.locator("#step-0 .prose")).to_contain_text("<script>window.__pwned")
            expect(page.locator("#step-1.is-done")).to_be_visible(timeout=10000)
            page.locator("#step-1 textarea").fill(EVIL_ANSWER)
            page.locator("#step-1 button.primary").click()
            expect(page.locator("#step-1 .answer blockquote")).to_have_text(EVIL_ANSWER)
            expect(page.locator("#step-2.is-done")).to_be_visible(timeout=10000)
            assert_nothing_ran(page, dialogs, console)
            page.goto(page.url + "/report")
            expect(page.locator("h1")).to_contain_text("How you decide")
            assert_nothing_ran(page, dialogs, console)
            context.close()
