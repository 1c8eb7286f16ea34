"""In Debian's headless Chromium: the header says who writes the steps as they are written, the
model or the built-in writer standing in for it."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import BrowserContext, expect

from server.app import create_app
from tests.chromium import assert_no_violations, start
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.servers import serve_app

pytestmark = pytest.mark.browser

WAIT_MS = 20000
MODEL = "Written live by fake-model"
BUILT_IN = "For now the built-in offline writer is writing, not fake-model"
# Every text the header shows, in order.
HEADER = """
window.__header = [];
document.addEventListener('DOMContentLoaded', () => {
  const banner = document.querySelector('[data-role="model-banner"]');
  const note = () => {
    const text = banner.innerText.trim();
    if (window.__header[window.__header.length - 1] !== text) window.__header.push(text);
  };
  note();
  new MutationObserver(note).observe(banner, {subtree: true, attributes: true});
});
"""


def test_the_header_follows_who_writes_each_step(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    """Regression: it said "Written live by <model>" while the built-in writer wrote the steps."""
    # The scenario's stream is cut once the page shows its first words (when the test says so).
    cut = Script(chunks=["You stand at a fork "], hold_after=1, drop_after=1)

    def respond(request: dict[str, Any]) -> Script:
        if "decision scenario" in request["messages"][1]["content"]:
            return cut
        return Script(chunks=["Which way do you lean, ", "and why?"])

    upstream = FakeUpstream()
    upstream.responder = respond
    context.add_init_script(HEADER)
    with serve(upstream) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url, "model": "fake-model"},
            limits={"max_attempts": 1, "worker_time_limit_s": 60.0},
        )
        with serve_app(create_app(settings)) as base:
            page = context.new_page()
            start(page, base, "Money")
            live = page.locator("#step-0.is-live [data-role='text']")
            expect(live).to_contain_text("You stand at a fork", timeout=WAIT_MS)
            cut.release.set()
            # The scenario falls back to a prepared one; the first question is the model's.
            expect(page.locator("#step-0.is-done")).to_have_attribute("data-source", "offline")
            expect(page.locator("#step-1.is-done")).to_have_attribute(
                "data-source", "model", timeout=WAIT_MS
            )
            banner = page.locator("[data-role='model-banner']")
            expect(banner).to_have_text(MODEL, use_inner_text=True)
            assert page.evaluate("window.__header") == [MODEL, BUILT_IN, MODEL]
            assert_no_violations(page)
