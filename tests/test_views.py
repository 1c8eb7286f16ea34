"""What pages say about a report's scores: which numbers the model gave and which the rules did."""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest

from server.app import create_app
from server.views import Score, scores_note, status_words
from tests.conftest import SettingsFactory
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.servers import serve_app
from tests.visitor import Visitor

MODEL, RULES = True, False


def scores(*given: bool) -> list[Score]:
    return [Score(f"Dim {n}", 5, "", by_model=by) for n, by in enumerate(given)]


def test_no_note_when_the_model_gave_every_score() -> None:
    assert scores_note(scores(MODEL, MODEL), "model") is None


def test_no_note_on_the_offline_writers_report() -> None:
    assert scores_note(scores(RULES, RULES), "offline") is None


def test_the_note_says_when_the_model_gave_no_scores() -> None:
    note = scores_note(scores(RULES, RULES, RULES), "model")
    assert note is not None and "gave no scores" in note and "built-in rules" in note


def test_the_note_names_the_dimensions_the_model_left_out() -> None:
    note = scores_note(scores(MODEL, RULES, RULES), "cache")
    assert note is not None
    assert "did not score Dim 1 or Dim 2" in note and "the others are the model's" in note


def report_without_some_scores(request: dict[str, Any]) -> Script:
    prompt = request["messages"][1]["content"]
    if "decision scenario" in prompt:
        return Script(chunks=["You must choose. Rent is due on Friday."])
    if "follow-up question" in prompt:
        return Script(chunks=["What would you do first?"])
    return Script(chunks=["## Summary\nYou wait.\n\n## Scores (0-10)\n- Principle: 6/10\n"])


@pytest.mark.anyio
@pytest.mark.both_backends  # a whole journey through the store, the broker and the cache
async def test_the_report_page_says_which_scores_the_model_left_out(
    make_settings: SettingsFactory,
) -> None:
    upstream = FakeUpstream()
    upstream.responder = report_without_some_scores
    with serve(upstream) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url}, journey={"questions_per_session": 1}
        )
        with serve_app(create_app(settings)) as base:
            async with Visitor(base) as visitor:
                sid = await visitor.start("ethics")
                with anyio.fail_after(30):
                    report = await visitor.finish(sid, 1)
                page = await visitor.http.get(f"/s/{sid}/report")
    done = report.events[-1].data
    for html in (done, page.text):
        assert "The model did not score Empathy, Courage or Pragmatism" in html
        assert "Scores (0-10)" not in html and "Principle: 6/10" not in html


def banner(page: str) -> str:
    """The header's words about who writes, as a person sees them (hidden parts left out)."""
    found = re.search(r'<p class="model-banner[^"]*"[^>]*>(.*?)</p>', page, re.DOTALL)
    assert found is not None
    shown = re.sub(r"<span [^>]*\bhidden\b[^>]*>.*?</span>", "", found.group(1), flags=re.DOTALL)
    return " ".join(re.sub(r"<[^>]+>", "", shown).split())


@pytest.mark.anyio
async def test_the_header_names_the_built_in_writer_while_model_calls_are_refused(
    make_settings: SettingsFactory,
) -> None:
    """Regression: it said "Written live by <model>" while every step was the built-in writer's."""
    with serve(FakeUpstream()) as upstream_url:
        settings = make_settings(llm={"base_url": upstream_url, "model": "fake-model"})
        app = create_app(settings)
        with serve_app(app) as base:
            async with Visitor(base) as visitor:
                assert banner((await visitor.home()).text) == "Written live by fake-model"
                # Memory pressure: new model calls are refused and their steps fall back.
                app.state.services.admission.drain("memory_soft")
                refused = (await visitor.home()).text
                app.state.services.admission.resume()
                again = (await visitor.home()).text
    assert banner(refused) == "For now the built-in offline writer is writing, not fake-model"
    assert 'class="model-banner is-offline"' in refused
    assert banner(again) == "Written live by fake-model"


@pytest.mark.anyio
async def test_without_a_live_model_the_header_names_only_the_built_in_writer(
    make_settings: SettingsFactory,
) -> None:
    with serve_app(create_app(make_settings())) as base:
        async with Visitor(base) as visitor:
            page = (await visitor.home()).text
    assert banner(page).startswith("Running on the built-in offline writer:")
    assert "data-writer" not in page  # nothing for the page to switch


@pytest.mark.anyio
async def test_a_step_s_done_element_is_its_element_on_the_session_page(
    make_settings: SettingsFactory,
) -> None:
    """`done` renders only the step and the next one (the others are outlines): what it sends
    must still be exactly what the page shows for that step."""
    upstream = FakeUpstream()
    upstream.responder = report_without_some_scores
    with serve(upstream) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url}, journey={"questions_per_session": 2}
        )
        with serve_app(create_app(settings)) as base:
            async with Visitor(base) as visitor:
                sid = await visitor.start("ethics")
                with anyio.fail_after(30):
                    await visitor.stream(sid, 0)
                    first = await visitor.stream(sid, 1)
                    asked = await visitor.http.get(f"/s/{sid}")
                    for n in (1, 2):
                        await visitor.stream(sid, n)
                        await visitor.answer(sid, n, f"Answer {n}: because it matters to me.")
                    report = await visitor.stream(sid, 3)
                    finished = await visitor.http.get(f"/s/{sid}")
    question = first.events[-1].data
    assert 'id="step-1"' in question and 'id="step-0"' not in question
    assert question in asked.text
    done = report.events[-1].data
    assert 'id="step-3"' in done and 'id="step-2"' not in done
    assert done in finished.text


@pytest.mark.anyio
async def test_a_live_step_says_its_state_in_words_before_the_script_runs(
    make_settings: SettingsFactory,
) -> None:
    """Regression: the page as served (and without JavaScript) said "connecting" or "writing",
    lower case, where the script says "Connecting…" and "Writing…"."""
    script = Script(chunks=["You stand at a fork. ", "Night falls."], hold_after=0)
    with serve(FakeUpstream(script)) as upstream_url:
        settings = make_settings(llm={"base_url": upstream_url}, stream={"abandon_grace_s": 30.0})
        with serve_app(create_app(settings)) as base:
            async with Visitor(base) as visitor:
                sid = await visitor.start()
                page = (await visitor.http.get(f"/s/{sid}")).text
                script.release.set()
    found = re.search(r'data-role="status-text">([^<]*)<', page)
    assert found is not None
    assert found.group(1) in ("Connecting…", "Writing…")


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("connecting", "Connecting…"),
        ("writing", "Writing…"),
        ("queued: you are next; the model is writing 1 answer at a time",
         "In the queue: you are next; the model is writing 1 answer at a time"),
        ("using the built-in writer",
         "The model did not come through, so this is the built-in writer instead"),
        ("The model is busy; asking again (2 of 3)", "The model is busy; asking again (2 of 3)"),
        ("the database is not answering; this page reconnects by itself",
         "The database is not answering; this page reconnects by itself"),
    ],
)  # fmt: skip
def test_a_status_is_served_in_the_words_the_script_gives_it(status: str, words: str) -> None:
    assert status_words(status) == words
