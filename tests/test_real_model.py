"""What a real small model wrote (tests/fixtures/real_model/): the formats and checks on it.

The fixtures are SmolLM2-135M-Instruct's own steps, recorded through llama.cpp's server with the
app's prompts (see tests/fixtures/real_model/README.md). Each carries the outcome a reader
checked by hand: what the checks must decide, the replies and scores the parsers must read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from server import checks
from server.generators import question, report
from server.generators.formats import live_end, tail_start
from server.generators.journey import SYSTEM_PROMPT, Exchange, Journey, Prompt

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "real_model"
STEPS = [
    pytest.param(step, id=f"{path.stem}-{n}-{step['kind']}")
    for path in sorted(FIXTURES.glob("*.json"))
    for n, step in enumerate(json.loads(path.read_text(encoding="utf-8")))
]
CHECKED = [param for param in STEPS if "check" in param.values[0]]


def prompt_of(step: dict[str, Any]) -> Prompt:
    journey = dict(step["journey"])
    journey["dimensions"] = tuple(journey["dimensions"])
    journey["exchanges"] = tuple(Exchange(**exchange) for exchange in journey["exchanges"])
    messages = (
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": step["user"]},
    )
    return Prompt(step["kind"], Journey(**journey), messages, step["max_tokens"], step["step"])


def test_there_are_enough_real_steps_of_every_kind() -> None:
    kinds = [param.values[0]["kind"] for param in STEPS]
    assert len(kinds) >= 10 and {"scenario", "question", "report"} <= set(kinds)
    assert any(param.values[0]["finish_reason"] == "length" for param in CHECKED)


@pytest.mark.parametrize("step", STEPS)
def test_the_live_text_never_shows_what_the_finished_text_leaves_out(step: dict[str, Any]) -> None:
    kind, text = step["kind"], step["text"]
    kept = text[: tail_start(kind, text)]
    shown_before = ""
    for end in range(len(text) + 1):
        shown = text[:end][: live_end(kind, text[:end])]
        assert kept.startswith(shown.rstrip()), (end, shown[-80:])
        assert shown.startswith(shown_before.rstrip()), "what was shown was taken back"
        shown_before = shown


@pytest.mark.parametrize("step", CHECKED)
def test_the_checks_decide_as_a_reader_did(step: dict[str, Any]) -> None:
    verdict = checks.check(prompt_of(step), step["text"], step["finish_reason"])
    assert verdict.outcome == step["check"], verdict.detail
    if verdict.outcome == "trimmed":
        # Never a half sentence: it ends a sentence or a whole line of a list.
        assert re.search(r"[.!?\u2026][\"'\u201d\u2019)*_]*$", verdict.text) or (
            verdict.text.rsplit("\n", 1)[-1].lstrip().startswith(("-", "*"))
        ), verdict.text[-80:]
        assert step["text"].startswith(verdict.text)


@pytest.mark.parametrize("step", [p for p in STEPS if "replies" in p.values[0]])
def test_question_parse_reads_the_replies_a_reader_saw(step: dict[str, Any]) -> None:
    text = step["text"]
    if "check" in step:
        text = checks.check(prompt_of(step), text, step["finish_reason"]).text
    parsed = question.parse(text)
    assert list(parsed.replies) == step["replies"]
    assert not re.search(r"(?im)^\W*(quick|possible) replies", parsed.text)


@pytest.mark.parametrize("step", [p for p in STEPS if "scores" in p.values[0]])
def test_report_parse_reads_the_scores_a_reader_saw(step: dict[str, Any]) -> None:
    text = step["text"]
    if "check" in step:
        text = checks.check(prompt_of(step), text, step["finish_reason"]).text
    parsed = report.parse(text, tuple(step["dimensions"]))
    assert parsed.scores == step["scores"]
    assert not re.search(r"(?im)^\W*scores\W*$", parsed.markdown)
