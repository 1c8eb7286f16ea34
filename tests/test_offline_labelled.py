"""The offline writer judged on the labelled set: directions, styles, and the report's honesty.

Held-out figures, measured with tests/offline_labelled.py's sets run through `judge`:
- HELD_OUT (12 sets, written after the first tuning): 70.8 % of directions, 8 of 12 styles
  when written; still 70.8 % and 8 of 12 after the reading changes for the browser journeys.
- HELD_OUT_FRESH (12 sets, written before those changes and not tuned on): 33.3 % of
  directions (16 of 48) and 5 of 12 styles before them, 33.3 % (16 of 48) and 5 of 12
  after. Most misses are answers with no signal the bank knows ("Sick to my stomach every
  time I drove past it"), read as "not enough to go on": the rules know words, not meaning.
  One fix came from reading those misses afterwards, so it is named here: a negated word
  is no paraphrase ("Doesn't bother me" had been read as the reply "It bothers me a lot").
  It turned one wrong direction into "not enough to go on"; the figure stayed at 33.3 %.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace

import pytest

from server import settings
from server.generators import question as question_gen
from server.generators import report as report_gen
from server.generators.bank import Bank
from server.generators.journey import Exchange, Journey
from server.generators.offline import OfflineWriter
from server.generators.reading import read
from server.generators.scoring import style
from tests.offline_labelled import CASES, HELD_OUT, HELD_OUT_FRESH, Case

CATEGORIES = settings.load(environ={}).categories
LETTER = {"high": "H", "low": "L", "none": "."}
# What the issue asks the set to cover.
KINDS = (
    "negation", "hedging", "exasperation", "irony", "emoji", "one-word", "long", "german",
    "spanish", "french", "quick-replies", "contradiction", "issue", "tired",
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    case: Case
    journey: Journey
    questions: tuple[str, ...]
    report: str
    directions: str
    style: str


@pytest.fixture(scope="module")
def outcomes(bank: Bank) -> list[Outcome]:
    writer = OfflineWriter(bank)
    return [judge(writer, bank, case) for case in CASES]


def judge(writer: OfflineWriter, bank: Bank, case: Case) -> Outcome:
    """Drive the case's journey as the app does and read what the writer concluded."""
    category = CATEGORIES[case.category]
    journey = Journey(
        category_id=case.category,
        category_title=category.title,
        dimensions=category.dimensions,
        seed=case.seed,
    )
    journey = replace(journey, scenario=writer.write(journey, "scenario"))
    questions = []
    for answer in case.answers:
        text = writer.write(journey, "question")
        questions.append(text)
        asked = question_gen.parse(text).text
        journey = replace(journey, exchanges=(*journey.exchanges, Exchange(asked, answer)))
    report = writer.write(journey, "report")
    directions = "".join(LETTER[s.direction] for s in writer.scores(journey))
    chosen, _ = style(writer.answered(journey), bank.common)
    return Outcome(case, journey, tuple(questions), report, directions, chosen.id)


def test_the_set_is_large_and_covers_every_kind_of_answer() -> None:
    assert len(CASES) >= 60
    assert len({case.name for case in CASES}) == len(CASES)
    per_category = Counter(case.category for case in CASES)
    assert set(per_category) == set(CATEGORIES)
    assert min(per_category.values()) >= 10
    tags = Counter(tag for case in CASES for tag in case.tags)
    for kind in KINDS:
        assert tags[kind] >= 1, kind
    for case in CASES:
        assert len(case.answers) == 5, case.name
        assert len(case.expect) == len(CATEGORIES[case.category].dimensions), case.name
        assert set(case.expect) <= {"H", "L", "."}, case.name


def direction_accuracy(outcomes: list[Outcome]) -> dict[str, float]:
    """Per dimension (category: label) and overall, the share of cases read the right way."""
    right: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for outcome in outcomes:
        labels = CATEGORIES[outcome.case.category].dimensions
        for label, want, got in zip(labels, outcome.case.expect, outcome.directions, strict=True):
            key = f"{outcome.case.category}: {label}"
            total[key] += 1
            right[key] += want == got
            total["overall"] += 1
            right["overall"] += want == got
    return {key: right[key] / total[key] for key in total}


def test_directions_are_right_in_at_least_90_percent_on_every_dimension(
    outcomes: list[Outcome],
) -> None:
    accuracy = direction_accuracy(outcomes)
    wrong = [
        f"{o.case.name}: expected {o.case.expect}, got {o.directions}"
        for o in outcomes
        if o.directions != o.case.expect
    ]
    assert accuracy["overall"] >= 0.90, "\n".join(wrong)
    # And on every dimension of every area on its own (ten cases each: one miss at most).
    for key, share in accuracy.items():
        assert share >= 0.90, (key, "\n".join(wrong))


def test_answers_not_tuned_on_are_still_read_mostly_right(bank: Bank) -> None:
    """The held-out sets: a floor below the targets, since the rules know only the words
    they were given (70.8 % of directions and 8 of 12 styles when they were written)."""
    writer = OfflineWriter(bank)
    held = [judge(writer, bank, case) for case in HELD_OUT]
    assert len(held) >= 12
    assert direction_accuracy(held)["overall"] >= 0.65
    assert sum(o.style == o.case.style for o in held) / len(held) >= 0.60


def test_answers_written_before_the_last_changes_do_not_read_worse(bank: Bank) -> None:
    """The second held-out sets (see the module's docstring for the figures): a floor at
    what they scored before the changes, so a later rule that reads them worse fails."""
    writer = OfflineWriter(bank)
    held = [judge(writer, bank, case) for case in HELD_OUT_FRESH]
    assert len(held) >= 12
    assert not {case.name for case in HELD_OUT_FRESH} & {case.name for case in CASES}
    assert direction_accuracy(held)["overall"] >= 16 / 48
    assert sum(o.style == o.case.style for o in held) >= 5


def test_styles_are_right_in_at_least_80_percent(outcomes: list[Outcome]) -> None:
    right = sum(o.style == o.case.style for o in outcomes)
    wrong = [
        f"{o.case.name}: expected {o.case.style}, got {o.style}"
        for o in outcomes
        if o.style != o.case.style
    ]
    assert right / len(outcomes) >= 0.80, "\n".join(wrong)


# The report agrees with itself and with the person.


def section(report: str, name: str) -> str:
    return report.split(f"## {name}")[1].split("\n## ")[0]


def points(report: str, name: str) -> dict[str, int | None]:
    """The dimensions a list names, with the score each bullet shows (None: no number)."""
    found: dict[str, int | None] = {}
    for line in section(report, name).splitlines():
        match = re.match(r"^- \*\*(.+?)\*\* \((?:(\d+)/10|not enough to go on)\)", line)
        if match:
            found[match.group(1)] = int(match.group(2)) if match.group(2) else None
    return found


def test_strengths_and_blind_spots_never_contradict_the_chart(outcomes: list[Outcome]) -> None:
    for o in outcomes:
        dims = CATEGORIES[o.case.category].dimensions
        chart = report_gen.parse(o.report, dims).scores
        strengths, blind = points(o.report, "Strengths"), points(o.report, "Blind spots")
        assert not set(strengths) & set(blind), o.case.name
        for label, shown in (*strengths.items(), *blind.items()):
            assert shown == chart.get(label), (o.case.name, label)
        assert all(score is not None and score > 5 for score in strengths.values()), o.case.name
        numbered = [score for score in blind.values() if score is not None]
        assert all(score < 5 for score in numbered), o.case.name
        if strengths and numbered:
            assert max(numbered) < min(s for s in strengths.values() if s is not None)


def typed_words(o: Outcome, bank: Bank) -> list[int]:
    writer = OfflineWriter(bank)
    return [a.reading.words for a in writer.answered(o.journey) if a.reading.typed_english]


def test_brief_only_when_the_answers_are(outcomes: list[Outcome], bank: Bank) -> None:
    briefs = 0
    for o in outcomes:
        words = typed_words(o, bank)
        brief = bool(words) and sum(words) / len(words) <= 6
        said = "brief" in section(o.report, "Your decision style")
        briefs += said
        if not brief:
            assert not said, o.case.name
            assert "answers are brief" not in o.report, o.case.name
    assert briefs >= 1  # the note is used where it is true


def test_a_dimension_without_evidence_gives_no_number(outcomes: list[Outcome], bank: Bank) -> None:
    writer = OfflineWriter(bank)
    seen = 0
    for o in outcomes:
        dims = CATEGORIES[o.case.category].dimensions
        parsed = report_gen.parse(o.report, dims)
        for rule in writer.scores(o.journey):
            if rule.score is None:
                seen += 1
                assert rule.label in parsed.missing
                assert f"- {rule.label}: not enough to go on" in o.report
            else:
                assert parsed.scores[rule.label] == rule.score
    assert seen >= 40


def test_answers_in_other_languages_are_acknowledged(outcomes: list[Outcome], bank: Bank) -> None:
    languages = {"german": "German", "spanish": "Spanish", "french": "French"}
    for o in outcomes:
        for tag, language in languages.items():
            if tag not in o.case.tags:
                continue
            summary = section(o.report, "Summary")
            assert f"in {language}" in summary, o.case.name
            assert "reads English only" in summary, o.case.name
            for k, answer in enumerate(o.case.answers[:-1]):
                if read(answer, bank.common).kind == "foreign":
                    assert language in o.questions[k + 1], (o.case.name, k)
                    assert "English only" in o.questions[k + 1], (o.case.name, k)


# The questions: about the scenario, quoting only what was typed, hearing doubt and feeling.

QUOTE = re.compile("\u201c([^\u201d]*)\u201d")


def reaction_openings(bank: Bank, kind: str) -> tuple[str, ...]:
    """The words each reaction template of a kind starts with, up to its quotation."""
    return tuple(t.split("\u201c")[0].split("<")[0] for t in bank.common.reactions[kind])


def test_questions_name_the_scenario(outcomes: list[Outcome], bank: Bank) -> None:
    first_named = 0
    for o in outcomes:
        scene = OfflineWriter(bank).scenario(o.journey)
        names = (*scene.people, scene.stakes, scene.place)
        for k, text in enumerate(o.questions):
            named = any(name in text for name in names if name)
            if k == 0:
                first_named += named
            else:
                assert named, (o.case.name, k, text)
    assert first_named >= len(outcomes) // 3


def test_a_clicked_reply_is_named_as_a_choice_not_as_the_persons_words(
    outcomes: list[Outcome], bank: Bank
) -> None:
    checked = 0
    for o in outcomes:
        answered = OfflineWriter(bank).answered(o.journey)
        for k, item in enumerate(answered[:-1]):
            if not item.clicked:
                continue
            text = question_gen.parse(o.questions[k + 1]).text
            assert text.startswith(reaction_openings(bank, "quick")), text
            assert "In your words" not in text and "You said" not in text, text
            checked += 1
    assert checked >= 20


def test_no_question_quotes_an_emoji_or_a_bare_yes_or_no(
    outcomes: list[Outcome], bank: Bank
) -> None:
    bare = {*bank.common.yes, *bank.common.no}
    for o in outcomes:
        for text in o.questions:
            for quoted in QUOTE.findall(question_gen.parse(text).text):
                assert re.search(r"[^\W\d_]", quoted), (o.case.name, text)
                assert quoted.strip(" .!?").lower() not in bare, (o.case.name, text)


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        ("idk", "doubt_short"),
        ("not sure", "doubt_short"),
        ("maybe", "doubt_short"),
        ("I am tired, really tired", "weary"),
        ("Time for myself, as usual. It's always me who has to sort this out.", "exasperation"),
        ("Oh great, another chance to prove I can work eighty hours a week.", "exasperation"),
        ("\U0001f937\u200d\u2640\ufe0f\U0001f605\U0001f643", "emoji"),
        ("no", "bare"),
        ("Ich wei\u00df es nicht.", "language"),
        ("I'm not sure whether I'd miss the city more than I expect, honestly.", "doubt"),
    ],
)
def test_the_next_question_hears_the_answer(bank: Bank, answer: str, kind: str) -> None:
    writer = OfflineWriter(bank)
    category = CATEGORIES["family"]
    journey = Journey("family", category.title, category.dimensions, seed=3)
    first = question_gen.parse(writer.write(journey, "question")).text
    journey = replace(journey, exchanges=(Exchange(first, answer),))
    text = question_gen.parse(writer.write(journey, "question")).text
    assert text.startswith(reaction_openings(bank, kind)), text
    if kind in ("doubt_short", "emoji", "bare"):
        assert "\u201c" not in text.split("?")[0].split(".")[0], text


# The examples, each read the way a person would.


def outcome(outcomes: list[Outcome], name: str) -> Outcome:
    return next(o for o in outcomes if o.case.name == name)


def score_of(o: Outcome, label: str) -> int | None:
    return report_gen.parse(o.report, CATEGORIES[o.case.category].dimensions).scores.get(label)


def test_a_47_word_answer_about_taking_a_week_is_deliberate_not_brief(
    outcomes: list[Outcome],
) -> None:
    o = outcome(outcomes, "finance-issue-take-a-week")
    assert len(o.case.answers[2].split()) >= 47
    assert o.style == "deliberate"
    assert "brief" not in o.report
    assert (score_of(o, "Emotional control") or 0) > 5


@pytest.mark.parametrize("name", ["finance-issue-too-safe", "career-issue-too-safe"])
def test_fearing_to_play_it_too_safe_is_not_low_risk_tolerance(
    outcomes: list[Outcome], name: str
) -> None:
    o = outcome(outcomes, name)
    assert (score_of(o, "Risk tolerance") or 0) > 5
    blind = section(o.report, "Blind spots")
    assert "play it too safe" not in blind


def test_no_fair_way_is_not_a_fairness_strength(outcomes: list[Outcome]) -> None:
    o = outcome(outcomes, "family-issue-fair-way")
    assert "Fairness" not in points(o.report, "Strengths")
    assert score_of(o, "Fairness") is None or (score_of(o, "Fairness") or 0) <= 5


def test_that_kind_of_thing_is_not_empathy(outcomes: list[Outcome], bank: Bank) -> None:
    o = outcome(outcomes, "ethics-issue-kind-of")
    empathy = {s.label: s for s in OfflineWriter(bank).scores(o.journey)}["Empathy"]
    assert "kind" not in empathy.high_hits
    assert empathy.direction == "low"


@pytest.mark.parametrize("name", ["ethics-issue-not-brave", "relationships-issue-avoidant"])
def test_not_brave_and_avoiding_conflict_is_not_the_decider(
    outcomes: list[Outcome], name: str
) -> None:
    o = outcome(outcomes, name)
    assert o.style != "decisive"
    assert "settled place" not in o.report
    label = "Courage" if o.case.category == "ethics" else "Conflict handling"
    assert (score_of(o, label) or 10) < 5


def test_idk_no_emoji_and_german_name_no_style(outcomes: list[Outcome], bank: Bank) -> None:
    o = outcome(outcomes, "family-issue-idk-no-emoji-german")
    assert o.style == "unclear"
    assert "settled place" not in o.report
    assert report_gen.parse(o.report, CATEGORIES["family"].dimensions).scores == {}
    # Each heard for what it is, and none quoted as a statement.
    heard = ("doubt_short", "bare", "emoji", "language")
    for k, kind in enumerate(heard, start=1):
        text = question_gen.parse(o.questions[k]).text
        assert text.startswith(reaction_openings(bank, kind)), text
    assert "German" in o.questions[4]


def test_exasperation_is_heard_not_read_as_conviction(outcomes: list[Outcome], bank: Bank) -> None:
    o = outcome(outcomes, "family-issue-always-me")
    text = question_gen.parse(o.questions[1]).text
    assert text.startswith(reaction_openings(bank, "exasperation")), text
    assert not text.startswith(reaction_openings(bank, "certainty")), text


def test_tiredness_is_acknowledged(outcomes: list[Outcome], bank: Bank) -> None:
    for name in ("health-issue-tired", "family-tired"):
        o = outcome(outcomes, name)
        text = question_gen.parse(o.questions[1]).text
        assert text.startswith(reaction_openings(bank, "weary")), text
        assert "tired" in text


def test_different_people_get_different_styles(outcomes: list[Outcome]) -> None:
    """Regression: "The intuitive" for 4 of 6 very different people."""
    named = Counter(o.style for o in outcomes if o.style != "unclear")
    assert len(named) >= 5
    assert max(named.values()) <= len(outcomes) // 4


def test_questions_name_the_people_of_a_scenario_the_model_wrote(bank: Bank) -> None:
    writer = OfflineWriter(bank)
    category = CATEGORIES["family"]
    story = (
        "You and your brother share a flat above the bakery. Last week Marguerite, your "
        "landlady, said she is selling. Your brother wants to buy it with Marguerite's help; "
        "you want to move to Lisbon with Teodor before the spring."
    )
    journey = Journey("family", category.title, category.dimensions, seed=2, scenario=story)
    for answer in ("I'd talk to my brother first.", "Maybe.", "no"):
        text = question_gen.parse(writer.write(journey, "question")).text
        journey = replace(journey, exchanges=(*journey.exchanges, Exchange(text, answer)))
    later = [question_gen.parse(writer.write(journey, "question")).text]
    assert any(name in text for text in later for name in ("Marguerite", "Teodor")), later
    assert not any(name in text for text in later for name in ("Lisbon", "Last", "Your")), later


# The journeys typed in a browser, each misread before (the look's finding 5).


def test_hating_the_doctor_is_not_information_seeking_and_looking_it_up_is(
    outcomes: list[Outcome], bank: Bank
) -> None:
    o = outcome(outcomes, "health-look-doctor")
    info = {s.label: s for s in OfflineWriter(bank).scores(o.journey)}["Information seeking"]
    assert "doctor" not in info.high_hits
    assert "look it up" in info.high_hits
    strengths = section(o.report, "Strengths")
    assert "**Information seeking**" in strengths
    assert "look it up online first, probably too much" in strengths
    # "probably too much" is overdoing, not exhaustion; her worry is not his.
    assert not question_gen.parse(o.questions[4]).text.startswith(reaction_openings(bank, "weary"))
    assert not question_gen.parse(o.questions[2]).text.startswith(reaction_openings(bank, "worry"))


def test_asking_my_sister_is_information_seeking_and_gambling_is_low_risk(
    outcomes: list[Outcome],
) -> None:
    o = outcome(outcomes, "finance-look-gambling")
    assert (score_of(o, "Information seeking") or 0) > 5
    assert (score_of(o, "Risk tolerance") or 10) < 5
    assert "investing feels like gambling" in o.report
    assert "read as the reply" not in o.report
    risk = next(x for x in section(o.report, "Blind spots").splitlines() if "Risk" in x)
    assert "Investing feels like gambling" in risk, risk
    assert "**Information seeking**" in section(o.report, "Strengths")


def test_the_collaboration_quote_shows_talking_to_the_partner(outcomes: list[Outcome]) -> None:
    o = outcome(outcomes, "career-look-partner")
    line = next(x for x in section(o.report, "Strengths").splitlines() if "Collaboration" in x)
    assert "talk to my partner first" in line
    assert "\u201cI find it hard\u201d" in o.report  # a signal shows "I" as written


def test_full_reasoned_answers_name_a_strength(outcomes: list[Outcome]) -> None:
    """Regression: "did not lean clearly enough" in 2 of 3 browser journeys."""
    for name in ("health-look-doctor", "finance-look-gambling", "career-look-partner"):
        o = outcome(outcomes, name)
        assert points(o.report, "Strengths"), name
