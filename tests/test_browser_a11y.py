"""Every page state through axe-core at 1280x900 and 390x844, light and dark, with screenshots;
target sizes and non-text contrast measured directly."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from server.app import create_app
from tests.a11y import summary, violations
from tests.chromium import PROBE
from tests.conftest import SettingsFactory
from tests.servers import serve_app

pytestmark = pytest.mark.browser

WAIT_MS = 20000
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}


class Audit:
    """axe on each page state, with a full-page screenshot of it under tmp_path."""

    def __init__(self, directory: Path, label: str) -> None:
        self.directory = directory
        self.label = label
        self.found: dict[str, list[dict[str, Any]]] = {}

    def __call__(self, page: Page, state: str) -> None:
        page.screenshot(path=self.directory / f"{self.label}-{state}.png", full_page=True)
        found = violations(page)
        if found:
            self.found[state] = found

    def report(self) -> str:
        return "\n".join(f"[{self.label} {state}]\n{summary(v)}" for state, v in self.found.items())


def new_context(browser: Browser, viewport: str, scheme: str) -> BrowserContext:
    ctx = browser.new_context(
        viewport=VIEWPORTS[viewport],  # type: ignore[arg-type]
        color_scheme=scheme,  # type: ignore[arg-type]
        reduced_motion="reduce",
    )
    ctx.add_init_script(PROBE)
    return ctx


def start(page: Page, base: str, category: str) -> str:
    page.goto(base + "/")
    page.get_by_role("button", name=re.compile(category)).click()
    page.wait_for_url(re.compile(r"/s/[\w-]+$"))
    return page.url.rsplit("/", 1)[1]


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("a11y-screenshots")


@pytest.fixture
def servers(make_settings: SettingsFactory) -> Iterator[tuple[str, str]]:
    """A slow writer (to catch a step while it is written) and a fast one (everything else)."""
    slow = make_settings(offline={"chars_per_s": 40.0}, stream={"abandon_grace_s": 5.0})
    fast = make_settings(journey={"questions_per_session": 1})
    with serve_app(create_app(slow)) as slow_url, serve_app(create_app(fast)) as fast_url:
        yield slow_url, fast_url


@pytest.mark.parametrize("scheme", ["light", "dark"])
@pytest.mark.parametrize("viewport", ["desktop", "phone"])
def test_every_page_state_has_no_axe_violations(
    browser: Browser, servers: tuple[str, str], shots: Path, viewport: str, scheme: str
) -> None:
    slow, fast = servers
    audit = Audit(shots, f"{viewport}-{scheme}")
    ctx = new_context(browser, viewport, scheme)
    try:
        page = ctx.new_page()
        page.goto(fast + "/")
        audit(page, "01-home")
        page.goto(fast + "/privacy")
        audit(page, "02-privacy")

        # A step being written, then stopped.
        start(page, slow, "Career")
        live = page.locator("#step-0.is-live")
        expect(live.locator("[data-role='text']")).to_contain_text(
            re.compile(r"\w+ \w+ \w+"), timeout=WAIT_MS
        )
        audit(page, "03-live-step")
        live.get_by_role("button", name="Stop writing").click()
        expect(page.locator("#step-0.is-stopped")).to_be_visible(timeout=WAIT_MS)
        audit(page, "04-stopped-step")

        # A question waiting for its answer, an error beside it, then the report.
        sid = start(page, fast, "Health")
        question = page.locator("#step-1.is-done")
        expect(question.locator("textarea")).to_be_visible(timeout=WAIT_MS)
        audit(page, "05-question")
        question.get_by_role("button", name="Send answer").click()
        expect(page.locator("#error-1")).to_contain_text("empty", timeout=WAIT_MS)
        audit(page, "06-question-with-error")
        question.locator("textarea").fill("I would talk to my doctor first, then decide.")
        question.get_by_role("button", name="Send answer").click()
        expect(page.locator("#step-2.is-done .chart")).to_be_visible(timeout=WAIT_MS)
        audit(page, "07-report-step")
        page.goto(f"{fast}/s/{sid}/report")
        audit(page, "08-report-page")
        page.get_by_role("button", name="Make a share link").click()
        expect(page.locator("a.share-link")).to_be_visible()
        audit(page, "09-report-page-shared")
        share = page.locator("a.share-link").get_attribute("href")
        page.goto(f"{fast}/s/{sid}/steps/1/change")
        audit(page, "10-change-an-answer")
        page.goto(f"{fast}/s/{sid}/steps/1/rewrite")
        audit(page, "10-write-again")
        page.goto(f"{fast}/s/{sid}/delete")
        audit(page, "10-delete")
        page.goto(fast + "/")
        audit(page, "11-home-with-journeys")
        page.goto(fast + "/s/nothing-here")
        audit(page, "12-not-found")
        stranger = browser.new_context(
            viewport=VIEWPORTS[viewport],  # type: ignore[arg-type]
            color_scheme=scheme,  # type: ignore[arg-type]
        )
        try:
            other = stranger.new_page()
            other.goto(f"{fast}{share}")
            audit(other, "13-shared-report")
        finally:
            stranger.close()
        assert page.evaluate("window.__violations") == []
    finally:
        ctx.close()
    assert not audit.found, audit.report()
