"""Debian's Chromium for the browser tests: its flags, a page probe, and the shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, sync_playwright

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
