"""The offline writer over the real bank: whole journeys, and the scores their reports give."""

from __future__ import annotations

from dataclasses import replace

import pytest

from server.generators import question as question_gen
from server.generators import report as report_gen
from server.generators.bank import Bank
from server.generators.journey import Exchange, Journey
from server.generators.offline import OfflineWriter
from tests.offline_journey import (
    CATEGORIES,
    PHRASES,
    QUESTIONS,
    quotes_in,
    run,
    signal_answers,
    start,
)


@pytest.mark.parametrize("category_id", sorted(CATEGORIES))
def test_full_journey(bank: Bank, writer: OfflineWriter, category_id: str) -> None:
    answers = signal_answers(bank, category_id, high=True)
    journey = run(writer, start(category_id), answers)

    assert 120 <= len(journey.scenario.split()) <= 250
    assert len(journey.questions) == QUESTIONS
    for k, text in enumerate(journey.questions):
        parsed = question_gen.parse(text)
        assert 2 <= len(parsed.replies) <= 4, text
        assert parsed.text.endswith("?"), text
        if k == 0:
            continue
        # It quotes something specific from the previous answer.
        assert any(PHRASES[k - 1] in quote for quote in quotes_in(parsed.text)), text
        assert not any(PHRASES[k - 2] in quote for quote in quotes_in(parsed.text)), text
    # No bank question is asked twice in one journey.
    asked = [question_gen.parse(text).text.split("\u201d")[-1] for text in journey.questions]
    assert len(set(asked)) == len(asked)

    parsed_report = report_gen.parse(journey.report, CATEGORIES[category_id].dimensions)
    assert parsed_report.missing == ()
    assert set(parsed_report.scores) == set(CATEGORIES[category_id].dimensions)
    assert all(0 <= score <= 10 for score in parsed_report.scores.values())
    for section in report_gen.SECTIONS:
        assert f"## {section}" in parsed_report.markdown
    verbatim = [answer for answer in answers if f"\u201c{answer}\u201d" in journey.report]
    assert len(verbatim) >= 3


@pytest.mark.parametrize("category_id", sorted(CATEGORIES))
def test_opposite_answers_give_different_questions_reports_and_scores(
    bank: Bank, writer: OfflineWriter, category_id: str
) -> None:
    high = run(writer, start(category_id), signal_answers(bank, category_id, high=True))
    low = run(writer, start(category_id), signal_answers(bank, category_id, high=False))
    assert high.questions[0] == low.questions[0]  # nothing answered yet
    for k in range(1, QUESTIONS):
        assert high.questions[k] != low.questions[k]
    assert high.report != low.report

    dims = CATEGORIES[category_id].dimensions
    high_scores = report_gen.parse(high.report, dims).scores
    low_scores = report_gen.parse(low.report, dims).scores
    assert any(high_scores[dim] > low_scores[dim] for dim in dims)
    assert not any(high_scores[dim] < low_scores[dim] for dim in dims)


@pytest.mark.parametrize("category_id", sorted(CATEGORIES))
def test_score_lines_name_the_signals_found(
    bank: Bank, writer: OfflineWriter, category_id: str
) -> None:
    answers = signal_answers(bank, category_id, high=False)
    journey = run(writer, start(category_id), answers)
    scores_section = journey.report.split(f"## {report_gen.SCORES_HEADING}")[1]
    lines = {line.split(":")[0].lstrip("- "): line for line in scores_section.strip().splitlines()}
    rules = writer.scores(journey.journey)
    assert {rule.label for rule in rules} == set(lines)
    assert any(rule.low_hits for rule in rules)
    for rule in rules:
        line = lines[rule.label]
        assert line.startswith(f"- {rule.label}: {rule.score} - ")
        for hit in (*rule.high_hits, *rule.low_hits):
            assert f"\u201c{hit}\u201d" in line
        if rule.score is None:
            assert rule.ups == rule.downs == 0
            assert "not enough to go on" in line
            continue
        # The rule is the one written in the docstring: each answer one vote, from 5 up or down.
        assert rule.score == round(10 * (rule.ups + 1) / (rule.ups + rule.downs + 2))
        if rule.high_hits and not rule.low_hits:
            assert rule.score > 5
        if rule.low_hits and not rule.high_hits:
            assert rule.score < 5


def test_no_answers_give_no_number_on_any_scale(writer: OfflineWriter) -> None:
    rules = writer.scores(start("finance"))
    assert [rule.score for rule in rules] == [None, None, None, None]
    assert {rule.direction for rule in rules} == {"none"}


@pytest.mark.parametrize("count", [2, 3])
def test_strengths_and_blind_spots_never_name_the_same_dimension(
    writer: OfflineWriter, count: int
) -> None:
    journey = replace(
        start("finance"),
        dimensions=CATEGORIES["finance"].dimensions[:count],
        exchanges=(Exchange("Q?", "I'd take the chance, it's worth the risk."),),
    )
    text = writer.write(journey, "report")
    strengths = text.split("## Strengths")[1].split("## Blind spots")[0]
    blind = text.split("## Blind spots")[1].split("## Suggestions")[0]
    assert "- **" in strengths
    assert "- **" in blind
    for dim in journey.dimensions:
        assert not (f"**{dim}**" in strengths and f"**{dim}**" in blind), dim


def test_offline_journey_text_never_claims_to_be_an_ai(bank: Bank, writer: OfflineWriter) -> None:
    for category_id in CATEGORIES:
        journey = run(writer, start(category_id), signal_answers(bank, category_id, high=True))
        for text in [journey.scenario, *journey.questions, journey.report]:
            assert "as an ai" not in text.lower()
            assert "language model" not in text.lower()


def test_unknown_category_borrows_a_bank_and_still_scores(writer: OfflineWriter) -> None:
    journey = Journey(
        category_id="hobbies",
        category_title="Hobbies",
        dimensions=("Patience", "Curiosity"),
        seed=3,
        exchanges=(Exchange("Q?", "I'd keep going because I like it."),),
    )
    text = writer.write(journey, "report")
    parsed = report_gen.parse(text, journey.dimensions)
    # The borrowed bank knows no signals for these dimensions: no number is made up.
    assert parsed.missing == journey.dimensions
    for dim in journey.dimensions:
        assert f"- {dim}: not enough to go on" in text
    assert 2 <= len(question_gen.parse(writer.write(journey, "question")).replies) <= 4


def test_no_strength_is_claimed_without_evidence(writer: OfflineWriter) -> None:
    journey = replace(
        start("ethics"), exchanges=tuple(Exchange(f"Q{k}?", "Somewhat") for k in range(5))
    )
    assert {rule.score for rule in writer.scores(journey)} == {None}
    text = writer.write(journey, "report")
    strengths = text.split("## Strengths")[1].split("## Blind spots")[0]
    assert "- **" not in strengths
    assert "did not lean clearly enough" in strengths
