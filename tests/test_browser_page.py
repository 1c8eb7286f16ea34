"""The page as a person uses it, in Chromium: no dead buttons after a failed send, where focus
and scrolling go, the keys the hint names, copy buttons, motion, contrast and target sizes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, Route, expect

from server.app import create_app
from tests import stored
from tests.chromium import PROBE
from tests.conftest import SettingsFactory
from tests.servers import serve_app

pytestmark = pytest.mark.browser

WAIT_MS = 20000
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def start(page: Page, base: str, category: str) -> str:
    page.goto(base + "/")
    page.get_by_role("button", name=re.compile(category)).click()
    page.wait_for_url(re.compile(r"/s/[\w-]+$"))
    return page.url.rsplit("/", 1)[1]


def new_context(browser: Browser, **options: object) -> BrowserContext:
    ctx = browser.new_context(**options)  # type: ignore[arg-type]
    ctx.add_init_script(PROBE)
    return ctx


@pytest.fixture
def fast(make_settings: SettingsFactory) -> Iterator[str]:
    settings = make_settings(journey={"questions_per_session": 2})
    with serve_app(create_app(settings)) as url:
        yield url


def focused(page: Page) -> str:
    """The focused element as `tag#id`, or `body`."""
    found: str = page.evaluate(
        "() => { const a = document.activeElement;"
        " return a ? a.tagName.toLowerCase() + (a.id ? '#' + a.id : '') : 'none'; }"
    )
    return found


# No dead buttons.


def test_a_send_cut_by_the_network_leaves_every_control_working_and_the_answer_kept(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    settings = make_settings(journey={"questions_per_session": 2})
    typed = "I would sleep on it and ask my brother what he thinks."
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        sid = start(page, base, "Money")
        step = page.locator("#step-1.is-done")
        expect(step.locator("textarea")).to_be_visible(timeout=WAIT_MS)
        step.locator("textarea").fill(typed)

        def cut(route: Route) -> None:
            route.abort("internetdisconnected")

        page.route("**/steps/1/answer", cut)
        step.get_by_role("button", name="Send answer").click()
        slot = page.locator("#error-1")
        expect(slot).to_contain_text("Your answer was not sent", timeout=WAIT_MS)
        expect(slot).not_to_contain_text("saved")
        for button in step.locator("button").all():
            expect(button).to_be_enabled()  # quick replies too
        # The keyboard user is back on the button they pressed, not thrown to <body>.
        expect(step.get_by_role("button", name="Send answer")).to_be_focused()
        expect(page.locator("#answer-1")).to_have_value(typed)
        assert stored.stored(settings, sid)["answers"] == []
        # A quick reply cut the same way: also back at once.
        step.locator(".reply").first.click()
        expect(step.locator(".reply").first).to_be_enabled()
        expect(step.get_by_role("button", name="Send answer")).to_be_enabled()
        # The network is back: the same button sends the kept answer.
        page.unroute("**/steps/1/answer")
        step.get_by_role("button", name="Send answer").click()
        expect(page.locator("#step-1 .answer blockquote")).to_have_text(typed, timeout=WAIT_MS)
        assert page.evaluate("window.__violations") == []


def test_a_server_error_also_gives_the_buttons_back(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    settings = make_settings(journey={"questions_per_session": 2})
    with serve_app(create_app(settings)) as base:
        page = context.new_page()
        start(page, base, "Career")
        step = page.locator("#step-1.is-done")
        expect(step.locator("textarea")).to_be_visible(timeout=WAIT_MS)
        step.locator("textarea").fill("Something worth keeping.")
        page.route(
            "**/steps/1/answer",
            lambda route: route.fulfill(status=502, body="Bad gateway", content_type="text/plain"),
        )
        step.get_by_role("button", name="Send answer").click()
        expect(page.locator("#error-1")).not_to_be_empty(timeout=WAIT_MS)
        expect(step.get_by_role("button", name="Send answer")).to_be_enabled()
        expect(page.locator("#answer-1")).to_have_value("Something worth keeping.")


# Focus, scrolling and the cue.


def test_focus_follows_the_journey_and_the_question_names_its_field(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    settings = make_settings(journey={"questions_per_session": 2}, offline={"chars_per_s": 600.0})
    ctx = new_context(browser, viewport=PHONE)
    try:
        with serve_app(create_app(settings)) as base:
            page = ctx.new_page()
            start(page, base, "Relationships")
            question = page.locator("#step-1.is-done")
            expect(question).to_be_visible(timeout=WAIT_MS)
            # The field is named by the question it answers.
            asked = page.locator("#step-1-text").inner_text().strip().split("\n")[0][:40]
            field = page.get_by_role("textbox", name=re.compile(re.escape(asked)))
            expect(field).to_have_id("answer-1")
            field.fill("I would tell them how I feel, kindly and soon.")
            field.press("Enter")
            # After the send, focus is on the step now being written, never <body>.
            expect(page.locator("#step-2.is-live")).to_be_attached(timeout=WAIT_MS)
            page.wait_for_function("() => document.activeElement && document.activeElement.id")
            assert focused(page) in ("h2#step-2-title", "h2#step-1-title"), focused(page)
            # When it is finished, its heading has focus and is in view (a phone).
            expect(page.locator("#step-2.is-done")).to_be_visible(timeout=WAIT_MS)
            page.wait_for_function("() => document.activeElement.id === 'step-2-title'")
            page.wait_for_function(
                "() => { const r = document.getElementById('step-2-title')"
                ".getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight; }"
            )
            page.locator("#answer-2").fill("Slowly, after a long walk.")
            page.locator("#answer-2").press("Control+Enter")
            expect(page.locator("#step-3.is-done")).to_be_visible(timeout=WAIT_MS)
            page.wait_for_function("() => document.activeElement.id === 'step-3-title'")
            # One Tab from the report's heading reaches "How each score was given".
            page.keyboard.press("Tab")
            expect(page.locator("#step-3 .score-reasons summary")).to_be_focused()
    finally:
        ctx.close()


def test_the_page_follows_the_text_until_the_person_scrolls_up_then_shows_a_cue(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    settings = make_settings(journey={"questions_per_session": 2}, offline={"chars_per_s": 250.0})
    ctx = new_context(browser, viewport=PHONE)
    try:
        with serve_app(create_app(settings)) as base:
            page = ctx.new_page()
            start(page, base, "Money")
            live = page.locator("#step-0.is-live [data-role='text']")
            # The scenario grows past the screen; the page keeps its end in view.
            page.wait_for_function("() => window.scrollY > 150", timeout=WAIT_MS)
            box = live.bounding_box()
            assert box is not None and box["y"] + box["height"] <= PHONE["height"] + 2
            # The person scrolls up to read: the page stays where they put it.
            page.mouse.move(200, 400)
            page.mouse.wheel(0, -100000)
            page.wait_for_function("() => window.scrollY === 0")
            expect(page.locator("#step-1.is-done")).to_be_visible(timeout=WAIT_MS)
            assert page.evaluate("window.scrollY") == 0
            # ...and a polite cue says the question is below; it takes them there.
            cue = page.get_by_role("button", name=re.compile("New question below"))
            expect(cue).to_be_visible()
            expect(page.locator("#announcer")).to_contain_text("is ready below")
            cue.click()
            expect(page.locator("#step-1-title")).to_be_focused()
            page.wait_for_function(  # a smooth scroll: it ends in view
                "() => { const r = document.getElementById('step-1-title')"
                ".getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight; }"
            )
            expect(cue).to_be_hidden()
    finally:
        ctx.close()


def test_the_pages_own_follow_arriving_after_a_wheel_up_does_not_pull_the_person_back(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    """The scroll event of the page's own last follow can come after the person's wheel-up
    (the wheel's own scroll lands a frame later); it must not switch following back on."""
    settings = make_settings(journey={"questions_per_session": 2}, offline={"chars_per_s": 120.0})
    ctx = new_context(browser, viewport=PHONE)
    try:
        with serve_app(create_app(settings)) as base:
            page = ctx.new_page()
            start(page, base, "Money")
            page.wait_for_function("() => window.scrollY > 150", timeout=WAIT_MS)
            held, later, live = page.evaluate(
                """async () => {
                    window.dispatchEvent(new WheelEvent("wheel", { deltaY: -100 }));
                    window.dispatchEvent(new Event("scroll"));  // the follow's own, late
                    const held = window.scrollY;
                    await new Promise((done) => setTimeout(done, 1500));
                    return [held, window.scrollY, !!document.querySelector("#step-0.is-live")];
                }"""
            )
            assert live, "the scenario ended before the check: make it slower"
            assert later == held
    finally:
        ctx.close()


# Keys.


def test_enter_sends_shift_enter_is_a_new_line_and_the_hint_says_so(
    fast: str, context: BrowserContext
) -> None:
    page = context.new_page()
    start(page, fast, "Ethics")
    field = page.locator("#answer-1")
    expect(field).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#hint-1")).to_contain_text("Enter sends; Shift+Enter starts a new line.")
    field.press("Enter")  # nothing typed: nothing sent, no error
    expect(page.locator("#error-1")).to_be_empty()
    field.type("First line")
    field.press("Shift+Enter")
    field.type("second line")
    expect(field).to_have_value("First line\nsecond line")
    field.press("Enter")
    expect(page.locator("#step-1 .answer blockquote")).to_have_text(
        "First line\nsecond line", timeout=WAIT_MS
    )


def test_without_javascript_the_hint_promises_no_keys_and_sharing_still_works(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    settings = make_settings(journey={"questions_per_session": 1})
    ctx = browser.new_context(java_script_enabled=False)
    try:
        with serve_app(create_app(settings)) as base:
            page = ctx.new_page()
            page.goto(base + "/")
            page.get_by_role("button", name=re.compile("Money")).click()
            page.wait_for_url(re.compile(r"/s/[\w-]+$"))
            for _ in range(120):
                if page.locator("#answer-1").count():
                    break
                page.wait_for_timeout(250)
                page.reload()
            expect(page.locator("#hint-1")).not_to_contain_text("Enter")
            page.locator("#answer-1").fill("Carefully.")
            page.locator("#step-1").get_by_role("button", name="Send answer").click()
            for _ in range(120):
                if page.locator("#step-2.is-done").count():
                    break
                page.wait_for_timeout(250)
                page.reload()
            report = page.locator("#step-2")
            expect(report.locator("button[data-copy]")).to_be_hidden()  # needs the script
            report.get_by_role("button", name="This doesn't fit me").click()
            expect(page.locator(".feedback-note")).to_contain_text("does not fit you")
            page.locator("#step-2").get_by_role("button", name="Make a share link").click()
            expect(page.locator("a.share-link")).to_be_visible()
    finally:
        ctx.close()


# Copy buttons.


def test_copy_buttons_copy_the_report_and_the_share_link(fast: str, browser: Browser) -> None:
    ctx = new_context(browser, permissions=["clipboard-read", "clipboard-write"])
    try:
        page = ctx.new_page()
        sid = start(page, fast, "Health")
        for n in (1, 2):
            step = page.locator(f"#step-{n}.is-done")
            expect(step.locator(".reply").first).to_be_visible(timeout=WAIT_MS)
            step.locator(".reply").first.click()
        report = page.locator("#step-3.is-done")
        expect(report).to_be_visible(timeout=WAIT_MS)
        report.get_by_role("button", name="Copy the report").click()
        expect(report.get_by_role("button", name="Copied")).to_be_visible()
        copied = page.evaluate("navigator.clipboard.readText()")
        assert copied.strip() == page.locator("#step-3-text").inner_text().strip()
        # "This doesn't fit me" is answered in place, and focus stays there.
        report.get_by_role("button", name="This doesn't fit me").click()
        note = report.locator(".feedback-note")
        expect(note).to_contain_text("does not fit you")
        expect(note).to_be_focused()
        page.goto(f"{fast}/s/{sid}/report")
        page.get_by_role("button", name="Make a share link").click()
        page.get_by_role("button", name="Copy link").click()
        href = page.locator("a.share-link").get_attribute("href")
        assert page.evaluate("navigator.clipboard.readText()") == f"{fast}{href}"
        assert page.evaluate("window.__violations") == []
    finally:
        ctx.close()


# Motion, contrast, targets, and a "Stop writing" that stays put.

LUMINANCE = """(color) => {
  const m = color.match(/[\\d.]+/g).map(Number);
  const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(m[0]) + 0.7152 * f(m[1]) + 0.0722 * f(m[2]);
}"""


def contrast(page: Page, first: str, second: str) -> float:
    lum = [page.evaluate(LUMINANCE, color) for color in (first, second)]
    high, low = max(lum), min(lum)
    return (high + 0.05) / (low + 0.05)


def style(page: Page, selector: str, prop: str, pseudo: str | None = None) -> str:
    value: str = page.evaluate(
        "([sel, prop, pseudo]) => getComputedStyle(document.querySelector(sel), pseudo)"
        ".getPropertyValue(prop)",
        [selector, prop, pseudo],
    )
    return value


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_edges_and_focus_rings_have_three_to_one_contrast(
    fast: str, browser: Browser, scheme: str
) -> None:
    ctx = new_context(browser, color_scheme=scheme, viewport=DESKTOP)
    try:
        page = ctx.new_page()
        start(page, fast, "Family")
        expect(page.locator("#answer-1")).to_be_visible(timeout=WAIT_MS)
        card = style(page, "#step-1", "background-color")
        paper = style(page, "body", "background-color")
        field = style(page, "#answer-1", "background-color")
        edge = style(page, "#answer-1", "border-top-color")
        assert contrast(page, edge, field) >= 3 and contrast(page, edge, card) >= 3
        chip = style(page, "#step-1 .reply", "border-top-color")
        assert contrast(page, chip, card) >= 3
        page.locator("#answer-1").focus()
        page.keyboard.press("Tab")  # the send button, focused from the keyboard
        ring = style(page, "#step-1 button.primary", "outline-color")
        assert style(page, "#step-1 button.primary", "outline-style") == "solid"
        assert contrast(page, ring, card) >= 3 and contrast(page, ring, paper) >= 3
    finally:
        ctx.close()


# The caret: after the block being written, or after the last formatted block when none is.
CARET = """() => {
  const tail = document.querySelector('#step-0 [data-role=tail]');
  const blocks = document.querySelectorAll('#step-0 [data-role=blocks] > *');
  const el = tail && tail.textContent ? tail : blocks[blocks.length - 1];
  return getComputedStyle(el, '::after').animationName;
}"""


def document_y(page: Page, locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None
    return float(box["y"]) + float(page.evaluate("window.scrollY"))


def test_reduced_motion_stops_every_animation_and_stop_writing_stays_put(
    make_settings: SettingsFactory, browser: Browser
) -> None:
    settings = make_settings(offline={"chars_per_s": 120.0}, stream={"abandon_grace_s": 5.0})
    with serve_app(create_app(settings)) as base:
        for motion, moving in (("no-preference", True), ("reduce", False)):
            ctx = new_context(browser, reduced_motion=motion, viewport=PHONE)
            try:
                page = ctx.new_page()
                start(page, base, "Career")
                live = page.locator("#step-0.is-live")
                text = live.locator("[data-role='text']")
                expect(text).to_contain_text(re.compile(r"\w+ \w+"), timeout=WAIT_MS)
                animations = [
                    style(page, "#step-0 .pulse", "animation-name"),
                    page.evaluate(CARET),
                ]
                assert all((name != "none") == moving for name in animations), animations
                stop = live.get_by_role("button", name="Stop writing")
                before = document_y(page, stop)
                grown = text.bounding_box()
                page.wait_for_function(
                    "(h) => document.querySelector('#step-0 [data-role=text]')"
                    ".getBoundingClientRect().height > h + 40",
                    arg=grown["height"] if grown else 0,
                    timeout=WAIT_MS,
                )
                # Measured in the document, so following the text (scrolling) does not count.
                assert abs(document_y(page, stop) - before) < 1
            finally:
                ctx.close()


TARGETS = """() => [...document.querySelectorAll('a[href], button, summary, textarea, input:not([type=hidden])')]
  .filter((el) => el.offsetParent !== null && !el.closest('.prose'))
  .map((el) => { const r = el.getBoundingClientRect();
    return [el.tagName + ' ' + (el.textContent || el.id).trim().slice(0, 30), r.width, r.height]; })
  .filter(([, w, h]) => w < 24 || h < 24)"""


def test_every_control_is_at_least_24_px_on_a_phone(fast: str, browser: Browser) -> None:
    ctx = new_context(browser, viewport=PHONE)
    try:
        page = ctx.new_page()
        sid = start(page, fast, "Money")
        for n in (1, 2):
            step = page.locator(f"#step-{n}.is-done")
            expect(step.locator(".reply").first).to_be_visible(timeout=WAIT_MS)
            assert page.evaluate(TARGETS) == [], n
            step.locator(".reply").first.click()
        expect(page.locator("#step-3.is-done")).to_be_visible(timeout=WAIT_MS)
        for url in ("", "/report", "/delete"):
            if url:
                page.goto(f"{fast}/s/{sid}{url}")
            assert page.evaluate(TARGETS) == [], url
        page.goto(fast + "/")
        assert page.evaluate(TARGETS) == []
    finally:
        ctx.close()


def reach_the_chart(page: Page, fast: str, area: str) -> None:
    """A journey in `area` answered with quick replies until its report's chart shows."""
    start(page, fast, area)
    for n in (1, 2):
        step = page.locator(f"#step-{n}.is-done")
        expect(step.locator(".reply").first).to_be_visible(timeout=WAIT_MS)
        step.locator(".reply").first.click()
    expect(page.locator("#step-3.is-done .score-chart")).to_be_visible(timeout=WAIT_MS)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_score_chart_is_readable_light_and_dark(
    fast: str, browser: Browser, scheme: str
) -> None:
    ctx = new_context(browser, color_scheme=scheme, viewport=DESKTOP)
    try:
        page = ctx.new_page()
        reach_the_chart(page, fast, "Health")
        card = style(page, "#step-3", "background-color")
        track = style(page, "#step-3 .chart-track", "fill")
        for text in ("chart-label", "chart-value", "chart-none"):
            if page.locator(f"#step-3 .{text}").count():
                fill = style(page, f"#step-3 .{text}", "fill")
                behind = track if text == "chart-none" else card
                assert contrast(page, fill, behind) >= 4.5, (text, fill, behind)
    finally:
        ctx.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_score_chart_labels_are_body_sized_on_a_phone_and_a_desktop(
    fast: str, browser: Browser, viewport: dict[str, int]
) -> None:
    ctx = new_context(browser, viewport=viewport)
    try:
        page = ctx.new_page()
        reach_the_chart(page, fast, "Money")
        # The chart scales with the page: what counts is the size its text is drawn at.
        sizes = page.evaluate(
            """() => [...document.querySelectorAll('#step-3 .chart-label')].map(t => {
                const box = t.getBoundingClientRect();
                const chart = t.ownerSVGElement.getBoundingClientRect();
                return {height: box.height, inside: box.left >= chart.left - 1
                        && box.right <= chart.right + 1};
            })"""
        )
        assert sizes, "no chart labels"
        for size in sizes:
            assert 12 <= size["height"] <= 24, size
            assert size["inside"], size
    finally:
        ctx.close()
