"""Debian's Chromium for the browser tests: its flags, a page probe, the shared fixtures and
what every browser test does: start a journey, check that no content-security rule was broken."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Records what the live region held just before `done` replaced it, any CSP violation, and
# whether a live text ever showed a question's quick-reply tail.
PROBE = """
window.__beforeDone = {};
window.__violations = [];
window.addEventListener('done', (e) => {
  const text = e.target.querySelector('[data-role="text"]');
  if (text) window.__beforeDone[e.target.id] = text.textContent;
}, true);
document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.violatedDirective));
// Whether a live text ever showed a question's machine-readable quick-reply tail.
window.__sawTail = false;
new MutationObserver(() => {
  for (const el of document.querySelectorAll('[data-role="text"]')) {
    if (/quick replies/i.test(el.textContent)) window.__sawTail = true;
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make test` installs it (make system-deps)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    ctx.add_init_script(PROBE)
    yield ctx
    ctx.close()


def start(page: Page, base: str, category: str) -> str:
    """Start a journey from the home page by its card's title; the new session's id."""
    page.goto(base + "/")
    page.get_by_role("button", name=re.compile(category)).click()
    page.wait_for_url(re.compile(r"/s/[\w-]+$"))
    return page.url.rsplit("/", 1)[1]


def assert_no_violations(page: Page) -> None:
    """No content-security-policy violation since the page loaded (the probe records them)."""
    assert page.evaluate("window.__violations") == []
