"""The journey's edges in Debian's headless Chromium: stop and write again, start over, drafts,
delete, revoke a share link, the privacy link, advice and resources, and JavaScript off."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    expect,
)

from server.app import create_app
from server.settings import Resource
from tests.chromium import assert_no_violations, start
from tests.conftest import SettingsFactory
from tests.servers import serve_app
from tests.stored import step_status, stored

pytestmark = pytest.mark.browser

WAIT_MS = 20000


@pytest.fixture
def errors(context: BrowserContext) -> list[str]:
    """Uncaught script errors of every page of the context."""
    found: list[str] = []
    context.on("page", lambda page: page.on("pageerror", lambda exc: found.append(str(exc))))
    return found


class Shots:
    """Screenshots under the test's tmp_path, numbered in the order they were taken."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.taken = 0

    def __call__(self, page: Page, name: str) -> None:
        self.taken += 1
        page.screenshot(path=self.directory / f"{self.taken:02d}-{name}.png", full_page=True)


@pytest.fixture
def shot(tmp_path: Path) -> Shots:
    directory = tmp_path / "screenshots"
    directory.mkdir()
    return Shots(directory)


def answer_all(page: Page, questions: int) -> None:
    """Answer every question with its first quick reply (or a few words), up to the report."""
    for n in range(1, questions + 1):
        step = page.locator(f"#step-{n}.is-done")
        expect(step).to_be_visible(timeout=WAIT_MS)
        if step.locator(".reply").count():
            step.locator(".reply").first.click()
        else:
            step.locator("textarea").fill("Slowly, and after asking someone I trust.")
            step.get_by_role("button", name="Send answer").click()
        expect(page.locator(f"#step-{n} .answer blockquote")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator(f"#step-{questions + 1}.is-done")).to_be_visible(timeout=WAIT_MS)


def draft(page: Page, sid: str, n: int) -> str | None:
    value: str | None = page.evaluate(
        "(key) => localStorage.getItem(key)", f"crossroads-draft-{sid}-{n}"
    )
    return value


def test_stop_writing_then_write_it_again(
    make_settings: SettingsFactory, context: BrowserContext, errors: list[str], shot: Shots
) -> None:
    settings = make_settings(offline={"chars_per_s": 150.0}, stream={"abandon_grace_s": 5.0})
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        sid = start(page, base, "Career")
        live = page.locator("#step-0.is-live")
        expect(live.locator("[data-role='text']")).to_contain_text(
            re.compile(r"\w+ \w+ \w+"), timeout=WAIT_MS
        )
        shot(page, "writing")
        live.get_by_role("button", name="Stop writing").click()
        stopped = page.locator("#step-0.is-stopped")
        expect(stopped).to_be_visible(timeout=WAIT_MS)
        expect(stopped).to_contain_text("You stopped this step")
        assert step_status(settings, sid, 0) == "stopped"
        shot(page, "stopped")
        # A reload shows it stopped; it does not start again by itself.
        page.reload()
        expect(page.locator("#step-0.is-stopped")).to_be_visible()
        assert step_status(settings, sid, 0) == "stopped"
        page.get_by_role("button", name="Write it again").click()
        expect(page.locator("#step-0.is-live")).to_be_visible(timeout=WAIT_MS)
        done = page.locator("#step-0.is-done")
        expect(done).to_be_visible(timeout=WAIT_MS)
        assert len(done.locator(".prose").inner_text().split()) >= 100
        expect(page.locator("#step-1")).to_be_visible(timeout=WAIT_MS)
        assert step_status(settings, sid, 0) == "done"
        shot(page, "written-again")
        assert_no_violations(page)
    assert errors == []


def test_start_over_shows_a_new_scenario(
    make_settings: SettingsFactory, context: BrowserContext, errors: list[str], shot: Shots
) -> None:
    settings = make_settings(offline={"chars_per_s": 4000.0})
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        sid = start(page, base, "Family")
        expect(page.locator("#step-0.is-done")).to_be_visible(timeout=WAIT_MS)
        texts = {page.locator("#step-0 .prose").inner_text()}
        shot(page, "first-scenario")
        sids = {sid}
        for _ in range(6):  # several scenarios per area: a new seed soon picks another
            page.get_by_role("button", name="Start over with a new scenario").click()
            page.wait_for_url(lambda url: url.rsplit("/", 1)[1] not in sids)
            sids.add(page.url.rsplit("/", 1)[1])
            expect(page.locator("h1")).to_have_text("Family")
            expect(page.locator("#step-0.is-done")).to_be_visible(timeout=WAIT_MS)
            texts.add(page.locator("#step-0 .prose").inner_text())
            if len(texts) > 1:
                break
        shot(page, "new-scenario")
        assert len(texts) > 1
        page.goto(base + "/")
        expect(page.locator(".journey")).to_have_count(len(sids))
    assert errors == []


def test_a_draft_survives_a_reload_and_is_cleared_once_sent(
    make_settings: SettingsFactory, context: BrowserContext, errors: list[str], shot: Shots
) -> None:
    settings = make_settings(journey={"questions_per_session": 2})
    typed = "I would sleep on it, then talk to my sister before deciding."
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        sid = start(page, base, "Money")
        field = page.locator("#step-1.is-done textarea")
        expect(field).to_be_visible(timeout=WAIT_MS)
        field.press_sequentially(typed)
        assert draft(page, sid, 1) == typed
        page.reload()
        expect(page.locator("#answer-1")).to_have_value(typed)
        shot(page, "draft-after-reload")
        # A second tab of the same journey gets the draft too.
        other = context.new_page()
        other.goto(page.url)
        expect(other.locator("#answer-1")).to_have_value(typed)
        other.close()
        page.locator("#step-1").get_by_role("button", name="Send answer").click()
        expect(page.locator("#step-1 .answer blockquote")).to_have_text(typed, timeout=WAIT_MS)
        assert draft(page, sid, 1) is None
        expect(page.locator("#step-2.is-done textarea")).to_have_value("", timeout=WAIT_MS)
        page.reload()
        expect(page.locator("#answer-1")).to_have_count(0)
        expect(page.locator("#answer-2")).to_have_value("")
        shot(page, "draft-cleared")
        assert_no_violations(page)
    assert errors == []


def test_a_draft_survives_a_rate_limit_error(
    make_settings: SettingsFactory, context: BrowserContext, errors: list[str], shot: Shots
) -> None:
    settings = make_settings(
        journey={"questions_per_session": 2}, limits={"answers_per_minute_per_client": 1}
    )
    typed = "Honestly, I would rather wait and see what happens next."
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        sid = start(page, base, "Ethics")
        first_reply = page.locator("#step-1.is-done .reply").first
        expect(first_reply).to_be_visible(timeout=WAIT_MS)
        first_reply.click()
        field = page.locator("#step-2.is-done textarea")
        expect(field).to_be_visible(timeout=WAIT_MS)
        field.fill(typed)
        before = stored(settings, sid)
        page.locator("#step-2").get_by_role("button", name="Send answer").click()
        slot = page.locator("#error-2")
        expect(slot).to_contain_text("Slow down a little", timeout=WAIT_MS)
        expect(slot).to_contain_text("nothing was lost")
        expect(page.locator("#answer-2")).to_have_value(typed)
        expect(page.locator("#step-2").get_by_role("button", name="Send answer")).to_be_enabled()
        assert draft(page, sid, 2) == typed
        assert stored(settings, sid) == before
        shot(page, "rate-limited")
        page.reload()
        expect(page.locator("#answer-2")).to_have_value(typed)
        assert_no_violations(page)
    assert errors == []


def test_deleting_a_journey_from_the_home_page(
    make_settings: SettingsFactory, context: BrowserContext, errors: list[str], shot: Shots
) -> None:
    settings = make_settings()
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        keep = start(page, base, "Health")
        expect(page.locator("#step-1.is-done textarea")).to_be_visible(timeout=WAIT_MS)
        page.locator("#answer-1").fill("A draft of a journey that stays.")
        sid = start(page, base, "Career")
        expect(page.locator("#step-1.is-done textarea")).to_be_visible(timeout=WAIT_MS)
        page.locator("#answer-1").fill("A draft of a journey about to go.")
        assert draft(page, sid, 1) == "A draft of a journey about to go."
        page.goto(base + "/")
        journeys = page.locator(".journey")
        expect(journeys).to_have_count(2)
        shot(page, "home-with-journeys")
        page.get_by_role("link", name=re.compile(r"^Delete the Career journey")).click()
        expect(page.locator("h1")).to_have_text("Delete this journey?")
        shot(page, "confirm-delete")
        assert stored(settings, sid)["sessions"]  # nothing is deleted before the confirmation
        page.get_by_role("button", name="Delete it").click()
        page.wait_for_url(re.compile(r"/\?deleted=1$"))
        expect(page.locator(".notice")).to_contain_text("was deleted")
        expect(journeys).to_have_count(1)
        expect(page.locator(f'a[href="/s/{sid}"]')).to_have_count(0)
        expect(page.locator(f'a[href="/s/{keep}"]')).to_have_count(1)
        shot(page, "after-delete")
        assert draft(page, sid, 1) is None  # the browser forgets its drafts too
        assert draft(page, keep, 1) == "A draft of a journey that stays."
        gone = page.goto(f"{base}/s/{sid}")
        assert gone is not None and gone.status == 404
        expect(page.locator("h1")).to_have_text("Journey not found")
        shot(page, "deleted-journey-404")
    assert stored(settings, sid) == {"sessions": [], "steps": [], "answers": []}
    assert stored(settings, keep)["sessions"]
    assert errors == []


def test_revoking_a_share_link(
    make_settings: SettingsFactory, browser: Browser, context: BrowserContext, shot: Shots
) -> None:
    settings = make_settings(journey={"questions_per_session": 1})
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        start(page, base, "Relationships")
        answer_all(page, 1)
        page.get_by_role("link", name="Open the report page").click()
        link = page.locator("a.share-link")
        # Sharing is off until the owner asks for a link.
        expect(page.locator("#share")).to_contain_text("Sharing is off")
        expect(link).to_have_count(0)
        page.get_by_role("button", name="Make a share link").click()
        expect(link).to_be_visible()
        old = link.get_attribute("href")
        assert old is not None and old.startswith("/r/")
        shot(page, "report-shared")
        outsider = browser.new_context()
        try:
            reader = outsider.new_page()
            response = reader.goto(base + old)
            assert response is not None and response.status == 200
            page.get_by_role("button", name="Revoke this link").click()
            expect(page.locator("#share")).to_contain_text("Sharing is off")
            expect(link).to_have_count(0)
            shot(page, "sharing-off")
            response = reader.goto(base + old)
            assert response is not None and response.status == 404
            expect(reader.locator("h1")).to_have_text("Report not found")
            page.get_by_role("button", name="Make a share link").click()
            expect(link).to_be_visible()
            new = link.get_attribute("href")
            assert new is not None and new != old
            response = reader.goto(base + new)
            assert response is not None and response.status == 200
            expect(reader.locator("h1")).to_contain_text("How you decide")
            expect(reader.locator("main form")).to_have_count(0)
            shot(reader, "shared-read-only")
            response = reader.goto(base + old)
            assert response is not None and response.status == 404
        finally:
            outsider.close()


def test_the_privacy_page_is_linked_from_every_page(
    make_settings: SettingsFactory, browser: Browser, context: BrowserContext, shot: Shots
) -> None:
    settings = make_settings(journey={"questions_per_session": 1})
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        sid = start(page, base, "Ethics")
        answer_all(page, 1)
        expect(page.locator("#step-2 a[href^='/r/']")).to_have_count(0)  # sharing is opt-in
        page.locator("#step-2").get_by_role("button", name="Make a share link").click()
        share = page.locator("a.share-link").get_attribute("href")
        outsider = browser.new_context()
        try:
            stranger = outsider.new_page()
            visits = [
                (page, "/", "home"),
                (page, f"/s/{sid}", "session"),
                (page, f"/s/{sid}/report", "report"),
                (page, f"/s/{sid}/delete", "delete"),
                (page, "/no/such/page", "not-found"),
                (stranger, f"/s/{sid}", "another-browsers-journey"),
                (stranger, str(share), "shared-report"),
            ]
            for tab, path, name in visits:
                tab.goto(base + path)
                privacy = tab.get_by_role("link", name="Privacy")
                expect(privacy).to_be_visible()
                assert privacy.get_attribute("href") == "/privacy", name
            stranger.get_by_role("link", name="Privacy").click()
            expect(stranger.locator("h1")).to_have_text("Privacy")
            expect(stranger.locator("main")).to_contain_text(
                f"{settings.storage.session_ttl_days} days"
            )
            expect(stranger.locator("main")).to_contain_text("not sent to anybody")
            shot(stranger, "privacy")
        finally:
            outsider.close()


def shows_resources(where: Locator, resources: tuple[Resource, ...]) -> None:
    items = where.locator(".resources li")
    expect(items).to_have_count(len(resources))
    for item, resource in zip(items.all(), resources, strict=True):
        expect(item).to_contain_text(resource.name)
        expect(item).to_contain_text(resource.contact)


def test_the_advice_line_and_resources_appear_on_the_right_reports(
    make_settings: SettingsFactory, context: BrowserContext, errors: list[str], shot: Shots
) -> None:
    settings = make_settings(journey={"questions_per_session": 1})
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        for title, category in (("Health", "health"), ("Money", "finance")):
            start(page, base, title)
            answer_all(page, 1)
            report = page.locator("#step-2")
            expect(report.locator(".advice")).to_have_text("A reflection, not professional advice.")
            resources = settings.categories[category].resources
            shows_resources(report, resources)
            shot(page, f"{category}-report-step")
            page.get_by_role("link", name="Open the report page").click()
            expect(page.locator("h1")).to_contain_text("How you decide")
            expect(page.locator("main .advice")).to_have_text(
                "A reflection, not professional advice."
            )
            shows_resources(page.locator("main"), resources)
            if resources:
                expect(page.get_by_role("link", name="https://findahelpline.com")).to_be_visible()
            shot(page, f"{category}-report-page")
        assert len(settings.categories["health"].resources) == 3
        assert_no_violations(page)
    assert errors == []


def test_the_whole_journey_with_javascript_off(
    make_settings: SettingsFactory, browser: Browser, shot: Shots
) -> None:
    settings = make_settings(
        journey={"questions_per_session": 2},
        offline={"chars_per_s": 400.0},
        stream={"abandon_grace_s": 5.0},
    )
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1000, "height": 900}
    )
    seen_live: list[str] = []

    def refresh_until(page: Page, selector: str) -> None:
        """Follow the refresh link (or reload) until the step is written, as a person would."""
        deadline = time.monotonic() + 30
        while not page.locator(selector).count():
            assert time.monotonic() < deadline, f"{selector} never appeared"
            live = page.locator(".step.is-live").last
            if live.count() and live.locator("[data-role='text']").inner_text().strip():
                expect(live.get_by_role("link", name="Refresh to see more")).to_be_visible()
                expect(live.get_by_role("button", name="Stop writing")).to_be_visible()
                if not seen_live:
                    shot(page, "no-js-live-step")
                seen_live.append(str(live.get_attribute("id")))
            page.wait_for_timeout(250)
            refresh = page.get_by_role("link", name="Refresh to see more")
            if refresh.count():
                refresh.first.click()
            else:
                page.reload()

    try:
        page = context.new_page()
        with serve_app(create_app(settings)) as base:
            page.goto(base + "/")
            page.get_by_role("button", name=re.compile("Money")).click()
            page.wait_for_url(re.compile(r"/s/[\w-]+$"))
            sid = page.url.rsplit("/", 1)[1]
            refresh_until(page, "#step-1.is-done")
            shot(page, "no-js-question-1")
            reply = page.locator("#step-1 .reply").first
            reply_text = reply.inner_text()
            reply.click()
            page.wait_for_url(re.compile(rf"/s/{sid}$"))
            expect(page.locator("#step-1 .answer blockquote")).to_have_text(reply_text)
            refresh_until(page, "#step-2.is-done")
            page.locator("#answer-2").fill("I would ask for a week to think, then decide alone.")
            page.locator("#step-2").get_by_role("button", name="Send answer").click()
            page.wait_for_url(re.compile(rf"/s/{sid}$"))
            expect(page.locator("#step-2 .answer blockquote")).to_contain_text("a week to think")
            refresh_until(page, "#step-3.is-done")
            expect(page.locator("#progress")).to_have_text("Report ready")
            expect(page.locator("#step-3 svg.score-chart")).to_be_visible()
            shot(page, "no-js-report-step")
            page.get_by_role("link", name="Open the report page").click()
            expect(page.locator("h1")).to_contain_text("How you decide")
            expect(page.locator("main")).to_contain_text("a week to think")
            shot(page, "no-js-report-page")
        assert seen_live, "no running step was ever shown with its text so far"
        assert stored(settings, sid)["answers"][1][1].startswith("I would ask for a week")
    finally:
        context.close()
