"""In Debian's headless Chromium: while the model is asked again, the status line says so and
offers the prepared text, which arrives at once with a note saying the person chose it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect

from server.app import create_app
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.servers import serve_app

pytestmark = pytest.mark.browser

WAIT_MS = 20000
WORDS = [f"word{i} " for i in range(12)]


@pytest.fixture
def upstream() -> Iterator[tuple[FakeUpstream, str]]:
    fake = FakeUpstream(Script(chunks=WORDS))
    seen: list[int] = []

    def respond(request: dict[str, Any]) -> Script:
        # The first scenario request gets a 429 asking for 30 s; everything else is answered.
        if "decision scenario" in request["messages"][1]["content"] and not seen:
            seen.append(1)
            return Script(status=429, retry_after="30")
        return Script(chunks=WORDS)

    fake.responder = respond
    with serve(fake) as url:
        yield fake, url


def test_the_status_line_offers_the_prepared_text_while_the_model_is_asked_again(
    make_settings: SettingsFactory,
    upstream: tuple[FakeUpstream, str],
    context: BrowserContext,
    tmp_path: Path,
) -> None:
    fake, url = upstream
    settings = make_settings(
        llm={"base_url": url, "model": "fake-model"},
        limits={"worker_time_limit_s": 60.0, "max_attempts": 3},
    )
    errors: list[str] = []
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(base + "/")
        page.get_by_role("button", name=re.compile("Money")).click()
        page.wait_for_url(re.compile(r"/s/[\w-]+$"))
        live = page.locator("#step-0.is-live")
        expect(live.locator("[data-role='status-text']")).to_have_text(
            "The model is busy; asking again (2 of 3)", timeout=WAIT_MS
        )
        button = live.get_by_role("button", name="Don't wait: use the prepared text")
        expect(button).to_be_visible()
        page.screenshot(path=tmp_path / "asking-again.png", full_page=True)
        button.click()
        done = page.locator("#step-0.is-done")
        expect(done).to_be_visible(timeout=5000)  # well before the 30 s the upstream asked for
        expect(done.locator(".note")).to_contain_text(
            "You chose not to wait for the model, so this is a prepared scenario."
        )
        assert done.get_attribute("data-source") == "offline"
        # The next step is written as usual, and its status line offers no button.
        next_step = page.locator("#step-1")
        expect(next_step).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#step-1.is-done")).to_be_visible(timeout=WAIT_MS)
        page.screenshot(path=tmp_path / "prepared.png", full_page=True)
        assert page.evaluate("window.__violations") == []
    assert errors == []
    assert sum("decision scenario" in r["messages"][1]["content"] for r in fake.requests) == 1
