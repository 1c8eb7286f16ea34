"""Driving the offline writer through a journey the way the app does, for the offline tests."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import pytest

from server import settings
from server.generators import question as question_gen
from server.generators.bank import Bank, BankQuestion, load_bank
from server.generators.journey import Exchange, Journey
from server.generators.offline import OfflineWriter

CATEGORIES = settings.load(environ={}).categories
QUESTIONS = 5
# One distinctive phrase per answer, so a question that reacts to it can be recognised.
PHRASES = (
    "the blue kettle",
    "my neighbour Odile",
    "the night ferry",
    "aunt Marguerite's garden",
    "the broken metronome",
)
QUOTE = re.compile("\u201c([^\u201d]*)\u201d")


# The offline tests' fixtures (a pytest plugin, tests/conftest.py): one bank and one writer per
# module, read from the files the app reads.
@pytest.fixture(scope="module")
def bank() -> Bank:
    return load_bank()


@pytest.fixture(scope="module")
def writer(bank: Bank) -> OfflineWriter:
    return OfflineWriter(bank)


def start(category_id: str, seed: int = 11) -> Journey:
    category = CATEGORIES[category_id]
    return Journey(
        category_id=category_id,
        category_title=category.title,
        dimensions=category.dimensions,
        seed=seed,
        questions_total=QUESTIONS,
    )


@dataclass
class Run:
    scenario: str
    questions: list[str]  # the written text of each question step
    journey: Journey  # after the last answer
    report: str


def run(writer: OfflineWriter, journey: Journey, answers: list[str]) -> Run:
    """Drive a journey the way the app does: the exchange holds the parsed question text."""
    scenario = writer.write(journey, "scenario")
    journey = replace(journey, scenario=scenario)
    questions = []
    for step, answer in enumerate(answers, start=1):
        assert journey.kind_of(step) == "question"
        text = writer.write(journey, "question")
        questions.append(text)
        parsed = question_gen.parse(text)
        journey = replace(journey, exchanges=(*journey.exchanges, Exchange(parsed.text, answer)))
    assert journey.kind_of(len(answers) + 1) == "report"
    return Run(scenario, questions, journey, writer.write(journey, "report"))


def signal_answers(bank: Bank, category_id: str, *, high: bool) -> list[str]:
    """Five short one-sentence answers, each with its phrase and two signals of one dimension."""
    dims = CATEGORIES[category_id].dimensions
    answers = []
    for k, phrase in enumerate(PHRASES):
        dim = bank.categories[category_id].dimensions[dims[k % len(dims)]]
        signals = dim.signals_high if high else dim.signals_low
        first, second = signals[(k // len(dims)) * 2], signals[(k // len(dims)) * 2 + 1]
        answers.append(f"Thinking of {phrase}: {first}, and also {second}.")
    assert all(len(answer) <= 110 for answer in answers)
    return answers


def quotes_in(text: str) -> list[str]:
    return QUOTE.findall(text)


def bank_question(bank: Bank, category_id: str, text: str) -> BankQuestion:
    """The bank question a written question ends with (after any opening or reaction)."""
    return next(
        candidate
        for dim in bank.categories[category_id].dimensions.values()
        for candidate in dim.questions
        if text.endswith(candidate.text)
    )
