"""The offline writer over the real bank: whole journeys, reactive questions, scored reports."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

import pytest

from server import settings
from server.generators import question as question_gen
from server.generators import report as report_gen
from server.generators.bank import LEANS, Bank, BankQuestion, Reply, _reply, load_bank
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


# The bank


def all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (key, *all_strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in all_strings(item)]
    return []


def bank_files() -> list[tuple[str, Any]]:
    folder = resources.files("server.generators").joinpath("bank")
    return [
        (entry.name, json.loads(entry.read_text(encoding="utf-8")))
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    ]


def test_bank_never_claims_to_be_an_ai() -> None:
    files = bank_files()
    assert len(files) >= 7
    for name, data in files:
        for text in all_strings(data):
            lowered = text.lower()
            assert "as an ai" not in lowered, name
            assert "language model" not in lowered, name


@pytest.mark.parametrize("category_id", sorted(CATEGORIES))
def test_bank_covers_the_category_and_its_dimensions(bank: Bank, category_id: str) -> None:
    category = bank.categories[category_id]
    assert set(category.dimensions) == set(CATEGORIES[category_id].dimensions)
    for dim in category.dimensions.values():
        assert dim.signals_high
        assert dim.signals_low
        assert len(dim.questions) >= QUESTIONS // len(category.dimensions) + 1
        for bank_question in dim.questions:
            assert 2 <= len(bank_question.replies) <= question_gen.MAX_REPLIES
            assert all(len(r.text) <= question_gen.MAX_REPLY_CHARS for r in bank_question.replies)


def test_every_quick_reply_in_every_bank_has_a_lean() -> None:
    count = 0
    for name, data in bank_files():
        if name == "common.json":
            continue
        for label, dim in data["dimensions"].items():
            leans = set()
            for bank_question in dim["questions"]:
                for reply in bank_question["replies"]:
                    assert isinstance(reply, dict), (name, label, reply)
                    assert set(reply) == {"text", "lean"}, (name, label, reply)
                    assert reply["text"].strip(), (name, label)
                    assert reply["lean"] in LEANS, (name, label, reply)
                    leans.add(reply["lean"])
                    count += 1
            # Quick replies alone can move every dimension either way.
            assert {"high", "low"} <= leans, (name, label)
    assert count > 300


def test_a_plain_string_reply_still_loads_as_neutral() -> None:
    assert _reply("Somewhat") == Reply("Somewhat", "neutral")
    assert _reply({"text": "All in", "lean": "high"}) == Reply("All in", "high")
    with pytest.raises(ValueError):
        _reply({"text": "All in", "lean": "sideways"})


@pytest.mark.parametrize("category_id", sorted(CATEGORIES))
def test_bank_has_eight_distinct_scenarios_of_120_to_250_words(
    bank: Bank, category_id: str
) -> None:
    scenarios = bank.categories[category_id].scenarios
    assert len(scenarios) >= 8
    assert len({s.id for s in scenarios}) == len(scenarios)
    assert len({s.text for s in scenarios}) == len(scenarios)
    for scenario in scenarios:
        assert 120 <= len(scenario.text.split()) <= 250, scenario.id


@pytest.mark.parametrize("category_id", sorted(CATEGORIES))
def test_different_seeds_pick_different_scenarios(
    bank: Bank, writer: OfflineWriter, category_id: str
) -> None:
    count = len(bank.categories[category_id].scenarios)
    assert writer.scenario(start(category_id, seed=1)) != writer.scenario(
        start(category_id, seed=2)
    )
    assert writer.scenario(start(category_id, seed=5)) == writer.scenario(
        start(category_id, seed=5)
    )
    seen = {writer.scenario(start(category_id, seed=seed)).id for seed in range(count)}
    assert len(seen) == count


# A whole journey per category


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


# Wording and safety of what is written


ODD_PUNCTUATION = re.compile(r"\?\.|!\.|(?<!\.)\.\.(?!\.)|[.?!]\u201d\.|\s[,.;:?!]|,,")


@pytest.mark.parametrize("category_id", ["finance", "career", "ethics"])
def test_written_text_has_no_doubled_punctuation(
    bank: Bank, writer: OfflineWriter, category_id: str
) -> None:
    answers = [
        "I'm scared of losing everything, what if it all goes wrong?",
        "Because my family depends on me.",
        "Honestly? I feel relieved!",
        "Maybe. I don't know yet...",
        "Definitely the second option; I decided last night.",
    ]
    journey = run(writer, start(category_id), answers)
    for text in [*journey.questions, journey.report]:
        assert not ODD_PUNCTUATION.search(text), ODD_PUNCTUATION.search(text)


def test_question_quoting_a_long_answer_cuts_at_a_word(writer: OfflineWriter) -> None:
    answer = (
        "We talked for hours about it and the conclusion, after a very long evening at the "
        "kitchen table with cold tea, was that nothing is simple"
    )
    assert len(answer) > 110
    journey = replace(start("family"), exchanges=(Exchange("First?", answer),))
    text = question_gen.parse(writer.write(journey, "question")).text
    (quote,) = quotes_in(text)
    assert quote.endswith("\u2026")
    shown = quote.removesuffix("\u2026")
    assert answer.startswith(shown)
    assert not answer[len(shown)].isalnum()  # the cut falls between words
    assert not shown.endswith((",", " "))


def test_markdown_and_html_in_answers_are_escaped_in_quotes(writer: OfflineWriter) -> None:
    answer = "<script>alert(1)</script> I think *bold* moves are fine because _risk_ is #1"
    journey = replace(
        start("finance"),
        exchanges=tuple(Exchange(f"Question {k}?", answer) for k in range(1, 4)),
    )
    question_text = question_gen.parse(writer.write(journey, "question")).text
    report_text = writer.write(journey, "report")
    escaped = "\\<script\\>alert(1)\\</script\\> I think \\*bold\\* moves"
    for text in (question_text, report_text):
        assert escaped in text
        assert "<script>" not in text
        assert " *bold*" not in text
    assert "\\_risk\\_ is \\#1" in report_text


def test_curly_apostrophes_match_straight_signals(writer: OfflineWriter) -> None:
    straight = "I can't afford to lose it, so I'll play it safe."
    curly = straight.replace("'", "\u2019")
    rules = {}
    for answer in (straight, curly):
        journey = replace(start("finance"), exchanges=(Exchange("Q?", answer),))
        rules[answer] = {rule.label: rule for rule in writer.scores(journey)}
    assert rules[curly] == rules[straight]
    assert "can't afford to lose" in rules[curly]["Risk tolerance"].low_hits
    assert rules[curly]["Risk tolerance"].score < 5


def test_curly_apostrophes_match_reaction_markers(writer: OfflineWriter, bank: Bank) -> None:
    answer = "I\u2019m sure about it: the night ferry"
    journey = replace(start("finance"), exchanges=(Exchange("Q?", answer),))
    text = question_gen.parse(writer.write(journey, "question")).text
    certainty = [t.split("\u201c")[0] for t in bank.common.reactions["certainty"]]
    assert text.startswith(tuple(certainty)), text
    assert "\u201cI\u2019m sure about it: the night ferry\u201d" in text


def test_negated_signals_do_not_count(writer: OfflineWriter) -> None:
    answer = "I would never gamble, and I don't want to invest. Not worth the risk."
    journey = replace(start("finance"), exchanges=(Exchange("Q?", answer),))
    risk = {rule.label: rule for rule in writer.scores(journey)}["Risk tolerance"]
    assert risk.high_hits == ()


@pytest.mark.parametrize(
    ("category_id", "label", "answer", "high", "low"),
    [
        (
            "family",
            "Responsibility",
            "I am not responsible for his debts.",
            (),
            ("not responsible",),
        ),
        ("family", "Flexibility", "We can change the plan.", ("change the plan",), ()),
        (
            "health",
            "Prevention",
            "I'd see a doctor sooner rather than later.",
            ("sooner rather than later",),
            (),
        ),
    ],
)
def test_a_longer_signal_hides_the_shorter_one_inside_it(
    writer: OfflineWriter,
    category_id: str,
    label: str,
    answer: str,
    high: tuple[str, ...],
    low: tuple[str, ...],
) -> None:
    """Regression: "change the plan" also counted its own "the plan" the other way."""
    journey = replace(start(category_id), exchanges=(Exchange("Q?", answer),))
    rule = {rule.label: rule for rule in writer.scores(journey)}[label]
    assert (rule.high_hits, rule.low_hits) == (high, low)


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


def test_no_strength_is_claimed_without_evidence(writer: OfflineWriter) -> None:
    journey = replace(
        start("ethics"), exchanges=tuple(Exchange(f"Q{k}?", "Somewhat") for k in range(5))
    )
    assert {rule.score for rule in writer.scores(journey)} == {None}
    text = writer.write(journey, "report")
    strengths = text.split("## Strengths")[1].split("## Blind spots")[0]
    assert "- **" not in strengths
    assert "did not lean clearly enough" in strengths


# Quick replies as evidence


def bank_question(bank: Bank, category_id: str, text: str) -> BankQuestion:
    """The bank question a written question ends with (after any opening or reaction)."""
    return next(
        candidate
        for dim in bank.categories[category_id].dimensions.values()
        for candidate in dim.questions
        if text.endswith(candidate.text)
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


def test_the_first_question_opens_differently_across_seeds(
    bank: Bank, writer: OfflineWriter
) -> None:
    openings = set()
    bare = 0
    for seed in range(30):
        text = question_gen.parse(writer.write(start("finance", seed=seed), "question")).text
        asked = bank_question(bank, "finance", text).text
        opening = text.removesuffix(asked).strip()
        openings.add(opening)
        bare += opening == ""
        assert text[0].isupper() and text.endswith("?"), text
        assert "\u201c" not in text  # nothing to react to yet
    assert len(openings) >= 3
    assert 0 < bare < 30


def test_a_score_without_evidence_is_drawn_without_a_bar() -> None:
    from server.render import score_chart
    from server.views import Score

    svg = str(score_chart([("Risk tolerance", 7), ("Fairness", None)]))
    assert svg.count('class="chart-bar"') == 1
    assert "not enough to go on" in svg
    assert "Fairness: not enough to go on" in svg  # the title read by screen readers
    assert "None" not in svg
    assert Score("Fairness", None, "").shown == "not enough to go on"
    assert Score("Fairness", 4, "").shown == "4/10"
