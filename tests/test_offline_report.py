"""The offline report's words: what its score lines claim, and what its evidence quotes."""

from __future__ import annotations

from dataclasses import replace

from server import settings
from server.generators import question as question_gen
from server.generators.bank import Bank
from server.generators.journey import Exchange, Journey
from server.generators.offline import OfflineWriter
from server.generators.offline_report import NO_STRENGTH, NO_STRENGTH_READ, score_line
from server.generators.scoring import DimensionScore

CATEGORIES = settings.load(environ={}).categories


def report_for(bank: Bank, category_id: str, seed: int, answers: tuple[str, ...]) -> str:
    """The report after typing the answers to the questions the writer asks."""
    writer = OfflineWriter(bank)
    category = CATEGORIES[category_id]
    journey = Journey(category_id, category.title, category.dimensions, seed=seed)
    journey = replace(journey, scenario=writer.write(journey, "scenario"))
    for answer in answers:
        asked = question_gen.parse(writer.write(journey, "question")).text
        journey = replace(journey, exchanges=(*journey.exchanges, Exchange(asked, answer)))
    return writer.write(journey, "report")


def section(report: str, name: str) -> str:
    return report.split(f"## {name}")[1].split("\n## ")[0]


def test_a_typed_answer_is_never_said_to_be_a_reply_the_person_picked() -> None:
    """Regression: "read as the reply 'Feeling, definitely'" for words the person typed."""
    typed = DimensionScore(
        "Emotional control",
        3,
        (),
        ("anxious",),
        low_short=(
            ("I would feel anxious and probably\u2026", "Feeling, definitely", "says"),
            ("No, I'd never sell in a panic", "No, it would be the same", "starts"),
        ),
    )
    line = score_line(typed)
    assert "read as the reply" not in line
    assert "chose" not in line and "picked" not in line
    assert "which says what the quick reply \u201cFeeling, definitely\u201d says" in line
    assert "which starts like the quick reply \u201cNo, it would be the same\u201d" in line


def test_evidence_quotes_the_words_that_earned_the_score(bank: Bank) -> None:
    """Regression: Collaboration 8/10 quoted the first 100 characters of an answer and cut
    off "talk to my partner first", the words that earned it."""
    report = report_for(
        bank,
        "career",
        58298,
        (
            "Honestly I'd probably take the safer option. I have a mortgage and two kids, and "
            "I've seen friends burn out chasing startups. But I'd ask for a week to think and "
            "talk to my partner first.",
            "I'd want to know what the team is actually like day to day.",
            "Probably I would say yes but regret it a bit.",
            "I think I'd write down the pros and cons and then go with my gut.",
            "Security, I guess. Maybe a side project is the compromise.",
        ),
    )
    collaboration = next(
        line for line in section(report, "Strengths").splitlines() if "Collaboration" in line
    )
    assert "talk to my partner first" in collaboration, collaboration
    assert "burn out" not in collaboration, collaboration


def test_reasoned_answers_are_not_told_to_give_their_reasons(bank: Bank) -> None:
    """With full answers that lean on no dimension, the report says the dimensions did not
    lean; the advice to give reasons is kept for brief answers."""
    plain = (
        "We spent the whole evening going over the same conversation from last spring again.",
        "There were a lot of people at the table and the meal went on until late that night.",
        "Most of this happened while the children were staying with their grandmother in town.",
        "The kitchen window looks out over the yard, and the light there changes in the evening.",
        "Every year the same questions come up around this time, and every year we move on.",
    )
    report = report_for(bank, "ethics", 3, plain)
    strengths = section(report, "Strengths")
    assert NO_STRENGTH_READ in strengths, report
    assert NO_STRENGTH not in strengths
    brief = report_for(bank, "ethics", 3, ("Hmm", "Not much", "It varies", "Somewhat", "Ok"))
    assert NO_STRENGTH in section(brief, "Strengths")
