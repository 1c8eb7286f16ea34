"""Quick replies as evidence: what clicking one moves, and how the report tells it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from server.generators import question as question_gen
from server.generators import report as report_gen
from server.generators.bank import Bank
from server.generators.journey import Exchange, Journey
from server.generators.offline import OfflineWriter
from tests.offline_journey import (
    CATEGORIES,
    QUESTIONS,
    bank_question,
    start,
)


def reply_run(
    bank: Bank, writer: OfflineWriter, category_id: str, lean: str, seed: int = 11
) -> tuple[Journey, dict[str, list[str]]]:
    """A journey answered only with quick replies, each leaning `lean` where one does
    (otherwise a neutral one); returns it and the replies chosen per dimension."""
    journey = start(category_id, seed=seed)
    chosen: dict[str, list[str]] = {}
    for _ in range(QUESTIONS):
        parsed = question_gen.parse(writer.write(journey, "question"))
        offered = bank_question(bank, category_id, parsed.text).replies
        assert [r.text for r in offered] == list(parsed.replies)
        leaning = [r.text for r in offered if r.lean == lean]
        answer = leaning[0] if leaning else next(r.text for r in offered if r.lean == "neutral")
        if leaning:
            label = next(
                label
                for label, dim in bank.categories[category_id].dimensions.items()
                if any(parsed.text.endswith(q.text) for q in dim.questions)
            )
            chosen.setdefault(label, []).append(answer)
        journey = replace(journey, exchanges=(*journey.exchanges, Exchange(parsed.text, answer)))
    return journey, chosen


@pytest.mark.parametrize("category_id", sorted(CATEGORIES))
@pytest.mark.parametrize("lean", ["high", "low"])
def test_quick_replies_alone_move_the_scores_and_are_named(
    bank: Bank, writer: OfflineWriter, category_id: str, lean: str
) -> None:
    journey, chosen = reply_run(bank, writer, category_id, lean)
    assert len(chosen) >= 2
    text = writer.write(journey, "report")
    parsed = report_gen.parse(text, journey.dimensions)
    lines = {
        line.split(":")[0].lstrip("- "): line
        for line in text.split(f"## {report_gen.SCORES_HEADING}")[1].strip().splitlines()
    }
    for label in journey.dimensions:
        if label not in chosen:
            assert label not in parsed.scores, lines[label]
            assert "not enough to go on" in lines[label]
            continue
        if lean == "high":
            assert parsed.scores[label] > 5, lines[label]
        else:
            assert parsed.scores[label] < 5, lines[label]
        replies = " and ".join(f"\u201c{reply}\u201d" for reply in chosen[label])
        assert (
            f"your quick repl{'ies' if len(chosen[label]) > 1 else 'y'} {replies}" in lines[label]
        )
        assert f"{replies} (toward {lean})" in lines[label]
    if lean == "high":
        # A strength is now claimed, with the reply that showed it and its question.
        strengths = text.split("## Strengths")[1].split("## Blind spots")[0]
        assert "did not lean clearly enough" not in strengths
        assert "you chose \u201c" in strengths


def test_an_answer_typed_like_a_quick_reply_counts_the_same(writer: OfflineWriter) -> None:
    question = "Picture the decision in front of you. " + (
        "What would have to be true for you to accept losing part of what you put at stake?"
    )

    def risk(answer: str) -> Any:
        journey = replace(start("finance"), exchanges=(Exchange(question, answer),))
        return {rule.label: rule for rule in writer.scores(journey)}["Risk tolerance"]

    exact = risk("I'd accept a big loss for a big upside")
    assert exact.score > 5
    assert exact.high_replies == ("I'd accept a big loss for a big upside",)
    for typed in (
        "  i'd ACCEPT a big   loss for a\nbig upside ",
        "I\u2019d accept a big loss for a big upside",
    ):
        assert risk(typed).score == exact.score, typed
        assert len(risk(typed).high_replies) == 1
    assert risk("i couldn't accept ANY loss").score < 5
    # A reply offered for another question, or a longer answer, is not a quick reply.
    assert risk("None of it").score is None
    assert risk("I'd accept a big loss for a big upside, maybe").high_replies == ()


def test_a_neutral_quick_reply_moves_nothing(writer: OfflineWriter) -> None:
    question = "Which part of this decision will still matter in five years, and which part will have faded?"
    journey = replace(start("finance"), exchanges=(Exchange(question, "Mostly the money side"),))
    assert {rule.score for rule in writer.scores(journey)} == {None}


def test_short_answers_are_summarised_with_the_question_they_answer(
    bank: Bank, writer: OfflineWriter
) -> None:
    journey = start("ethics", seed=4)
    texts = []
    for _ in range(QUESTIONS):
        parsed = question_gen.parse(writer.write(journey, "question"))
        texts.append(parsed.text)
        answer = parsed.replies[-1]
        journey = replace(journey, exchanges=(*journey.exchanges, Exchange(parsed.text, answer)))
    summary = writer.write(journey, "report").split("## Summary")[1].split("##")[0]
    first_question = bank_question(bank, "ethics", texts[0]).text
    # A clicked reply is told as a choice, with the question it answered.
    assert f"Asked \u201c{first_question}\u201d, you first chose" in summary
    assert f"\u201c{journey.exchanges[0].answer}\u201d" in summary
    # The reaction sentence of a later question is not repeated as if it were the question.
    assert "Taking that in" not in summary
    assert "You said" not in summary
