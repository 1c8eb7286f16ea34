"""Formatted while it streams, in Debian's Chromium: complete Markdown blocks show formatted as
they end, the block being written as plain text, no Markdown syntax in sight, and the swap to
the final rendering at `done` moves the text by no more than 8 px, on a desktop and a phone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, BrowserContext, expect

from server.app import create_app
from tests.chromium import assert_no_violations, start
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.servers import serve_app

pytestmark = pytest.mark.browser

LONG = (
    "You have until Friday to answer, and the form is already on the kitchen table "
    "next to the cold coffee and the letter from the bank that you have not opened. "
)
CHUNKS = [
    "**The offer**\n\n",
    "You are Maya, a nurse of thirty-four, ",
    "and the clinic where you have worked for nine years ",
    "has offered you a **buyout**: a year's pay if you leave by June. ",
    "Your partner thinks it is a gift; your mother thinks it is a trap.\n\n",
    "## What is at stake\n\n",
    "- Your **pension**, which grows if you stay five more years\n",
    "- Your sister's plan to open a small practice, which needs a partner now\n",
    "\n",
    LONG,
    LONG,
    "It would be easy to let the date decide for you.",
]
HELD_AFTER = 10  # the last paragraph is being written: everything before it is complete
REPLIES = ["\n\n**Quick replies:**\n", "- Stay\n", "- Go\n", "- Not sure yet\n"]

# Where the text sits just before `done` replaces the live step, and just after.
MEASURE = """
window.__rects = {};
function measure(root, text) {
  const box = text.getBoundingClientRect();
  const first = text.querySelector('p, h2, h3, ul, ol');
  return {top: box.top, height: box.height,
          first: first ? first.getBoundingClientRect().top : null,
          heading: root.querySelector('.step-title').getBoundingClientRect().top};
}
window.addEventListener('done', (e) => {
  if (e.target.id === 'step-0')
    window.__rects.before = measure(e.target, e.target.querySelector('[data-role="text"]'));
}, true);
document.addEventListener('crossroads:done', () => {
  const root = document.getElementById('step-0');
  if (root && !window.__rects.after) window.__rects.after = measure(root, root.querySelector('.prose'));
});
"""


@pytest.mark.parametrize(("width", "height"), [(1280, 900), (390, 844)], ids=["desktop", "phone"])
def test_a_scenario_streams_formatted_and_nothing_moves_at_done(
    make_settings: SettingsFactory, browser: Browser, width: int, height: int
) -> None:
    script = Script(chunks=CHUNKS, hold_after=HELD_AFTER)
    with serve(FakeUpstream(script)) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url},
            # Deadlines far off: on a busy machine the model must not fall back to other text.
            limits={
                "first_token_timeout_s": 60.0,
                "chunk_timeout_s": 60.0,
                "worker_time_limit_s": 120.0,
                "max_attempts": 1,
            },
            stream={"abandon_grace_s": 30.0},
        )
        with serve_app(create_app(settings)) as base:
            context = browser.new_context(viewport={"width": width, "height": height})
            context.add_init_script(MEASURE)
            page = context.new_page()
            page.goto(base + "/")
            page.get_by_role("button", name=re.compile("Money")).click()
            page.wait_for_url(re.compile(r"/s/[\w-]+$"))
            live = page.locator("#step-0.is-live")
            blocks = live.locator("[data-role='blocks']")
            # While the last paragraph is being written, everything before it is formatted.
            expect(blocks.locator("ul > li")).to_have_count(2, timeout=30000)
            expect(blocks.locator("h2")).to_have_text("What is at stake")
            expect(blocks.locator("strong").first).to_have_text("buyout")
            assert blocks.locator("ul").count() == 1  # items that arrived apart form one list
            expect(live.locator("[data-role='tail']")).to_have_text(re.compile("^You have until"))
            shown = live.locator("[data-role='text']").inner_text()
            assert "**" not in shown and "##" not in shown and "The offer" not in shown
            # Read out once, as each block is added; the line being typed is not read out.
            assert blocks.get_attribute("aria-live") == "polite"
            assert live.locator("[data-role='tail']").get_attribute("aria-hidden") == "true"
            script.release.set()
            expect(page.locator("#step-0.is-done")).to_be_visible(timeout=20000)
            rects = page.evaluate("window.__rects")
            final = page.locator("#step-0 .prose")
            expect(final.locator("h2")).to_have_text("What is at stake")
            assert "The offer" not in final.inner_text()
            context.close()
    before, after = rects["before"], rects["after"]
    for key in ("heading", "top", "first", "height"):
        assert abs(before[key] - after[key]) <= 8, (key, before, after)


def test_while_the_quick_replies_are_written_the_status_says_so(
    make_settings: SettingsFactory, context: BrowserContext
) -> None:
    """The question on the page is complete while its quick replies, which are shown only when
    the step is done, are still being written: "Writing…" would look stuck."""
    question = Script(
        chunks=["Which way do you lean, ", "and what would change your mind?", *REPLIES],
        hold_after=3,  # the replies' heading is written
    )
    upstream = FakeUpstream()
    upstream.script(Script(), question)
    with serve(upstream) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url},
            limits={"first_token_timeout_s": 60.0, "chunk_timeout_s": 60.0, "max_attempts": 1},
        )
        with serve_app(create_app(settings)) as base:
            page = context.new_page()
            start(page, base, "Money")
            live = page.locator("#step-1.is-live")
            status = live.locator("[data-role='status-text']")
            expect(status).to_have_text("Writing the quick replies…", timeout=30000)
            expect(live.locator("[data-role='text']")).to_have_text(
                "Which way do you lean, and what would change your mind?"
            )
            # Nothing more will be typed where the text ends: no caret there.
            expect(live).to_have_attribute("data-state", "finishing")
            carets = live.locator("[data-role='text'] *").evaluate_all(
                "els => els.map(e => getComputedStyle(e, '::after').content)"
            )
            assert not [c for c in carets if "\u258d" in c], carets
            question.release.set()
            done = page.locator("#step-1.is-done")
            expect(done.get_by_role("button", name="Stay")).to_be_visible(timeout=20000)
            assert_no_violations(page)
