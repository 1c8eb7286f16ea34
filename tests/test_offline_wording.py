"""What the offline writer writes: punctuation, quotes, escaping, and which words count."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from server.generators import question as question_gen
from server.generators.bank import Bank
from server.generators.journey import Exchange
from server.generators.offline import OfflineWriter
from tests.offline_journey import CATEGORIES, QUESTIONS, bank_question, quotes_in, run, start

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


@pytest.mark.parametrize("category_id", sorted(CATEGORIES))
def test_a_question_does_not_repeat_the_verb_its_scene_line_opens_with(
    bank: Bank, writer: OfflineWriter, category_id: str
) -> None:
    """Regression: "Picture yourself in the row house. If this went badly, what is the worst
    outcome you can picture, and how would you cope with it?" (the lines that open a question
    and bring the scene back)."""
    common = bank.common
    lines = [
        *common.openings,
        *common.scene_openings,
        *(t for ts in common.bridges.values() for t in ts),
    ]
    verbs = {line.split()[0] for line in lines}
    opens = re.compile(rf"(?:^|[.?!\u201d]\s+)({'|'.join(verbs)})\b")
    checked = 0
    for seed in range(12):
        journey = start(category_id, seed=seed)
        for _ in range(QUESTIONS):
            parsed = question_gen.parse(writer.write(journey, "question"))
            asked = bank_question(bank, category_id, parsed.text).text
            for verb in opens.findall(parsed.text.removesuffix(asked)):
                checked += 1
                assert not re.search(rf"\b{verb.lower()}\b", asked.lower()), parsed.text
            answer = parsed.replies[0]
            journey = replace(
                journey, exchanges=(*journey.exchanges, Exchange(parsed.text, answer))
            )
    assert checked > 10


LONG_ANSWERS = [
    "Investing feels like gambling to me. I would rather keep the money in a savings account "
    "where I know it is safe, even if it earns less, because losing it would keep me up at night.",
    "I would talk to my sister first and then decide, because she knows the family better than "
    "anyone and she would tell me honestly what she thinks of the whole plan.",
    "My partner and I argued about it for weeks. In the end we agreed to wait a year and save "
    "more before we commit to anything that big.",
    "Honestly I am not sure what I would do here, I keep going back and forth between the two "
    "options and neither of them feels right to me at the moment.",
    "The advice from my father matters most; he has made this kind of decision before and he "
    "knows what it costs when it goes wrong for a family like ours.",
]


@pytest.mark.parametrize("category_id", ["finance", "relationships"])
def test_long_answers_are_quoted_to_a_sentence_or_a_clause_not_cut_mid_clause(
    writer: OfflineWriter, category_id: str
) -> None:
    """A quote cut anywhere ("and she would…") reads as if the person trailed off: a long
    answer is quoted to the end of a sentence, else to a clause's end with an ellipsis."""
    result = run(writer, start(category_id), LONG_ANSWERS)
    texts = [*result.questions, result.report]
    answers = [" ".join(answer.split()) for answer in LONG_ANSWERS]
    quoted = [q.replace("\\", "") for text in texts for q in quotes_in(text) if len(q) > 40]
    assert len(quoted) >= 3, texts
    for q in quoted:
        said = q.removeprefix("\u2026").removesuffix("\u2026")
        found = [a for a in answers if said in a]
        assert found, q
        after = found[0][found[0].index(said) + len(said) :]
        # The quote ends a sentence, or what follows it in the answer is nothing or the mark
        # that ends its clause.
        assert said.endswith((".", "!", "?")) or after == "" or after[0] in ".,;:!?", q


PLAIN_ANSWERS = [
    "The kitchen table where we talk about money.",
    "My brother and his family next door.",
    "A small flat with a garden behind it.",
    "The bus ride to work every morning.",
    "Our old car and the trips we took in it.",
]


@pytest.mark.parametrize("seed", range(12))
def test_a_journey_never_hears_two_answers_the_same_way(writer: OfflineWriter, seed: int) -> None:
    """Five plain answers: each question opens by hearing the last one in words no earlier
    question of the journey used ("Taking that in: …" three times read as a form)."""
    result = run(writer, start("finance", seed=seed), PLAIN_ANSWERS)
    openings = [q.split("\u201c")[0] for q in result.questions[1:] if "\u201c" in q]
    assert len(openings) >= 3, result.questions
    assert len(set(openings)) == len(openings), openings
