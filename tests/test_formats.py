"""The step formats: what the live text may show, and where replies and scores begin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.generators import question, report
from server.generators.formats import LIVE_TAILS, live_end, tail_start
from server.generators.journey import StepKind

QUESTION = "What would you do with the money first?"
BODY = "## Summary\nYou weigh things before you act.\n\n## Suggestions\n- Sleep on it."


def shown(kind: StepKind, text: str) -> str:
    return text[: live_end(kind, text)]


# live_end: every prefix of a streamed text


QUESTION_TAILS = [
    "Quick replies:\n- Stay\n- Go",
    "Quick replies\n- Stay\n- Go",
    "**Quick replies**:\n- Stay\n- Go",
    "**Quick replies:**\n- Stay\n- Go",
    "### Quick replies\n- Stay\n- Go",
    "## 2. Quick replies\n- Stay",
    "Quick replies (pick one):\n1. Stay\n2. Go",
    "Possible replies:\n- Stay\n- Go",
    "Suggested answers:\n* Stay\n* Go",
    "Options:\na) Stay\nb) Go",
    "Here are some quick replies:\n- Stay",
    "1. Stay, because the rent is due\n2. Go, because I would regret it",
    "- Stay\n- Go",
    "\u2022 Stay\n\u2022 Go",
]


@pytest.mark.parametrize("tail", QUESTION_TAILS)
def test_a_question_never_shows_any_part_of_its_reply_tail(tail: str) -> None:
    text = f"{QUESTION}\n\n{tail}"
    for end in range(len(QUESTION), len(text) + 1):
        visible = shown("question", text[:end])
        assert QUESTION.startswith(visible.rstrip()) or visible.rstrip() == QUESTION, (
            text[:end],
            visible,
        )
    assert shown("question", text).rstrip() == QUESTION
    assert tail_start("question", text) <= len(QUESTION) + 1


REPORT_TAILS = [
    "## Scores\n- Risk tolerance: 7 - steady",
    "## Scores:\n- Risk tolerance: 7",
    "**Scores**\n- Risk tolerance: 7/10",
    "Scores:\nRisk tolerance: 7",
    "## Scores (0-10)\n- Risk tolerance: 7",
    "## 6. Scores\n1. Risk tolerance - 7 out of 10",
    "### Your scores\n- Risk tolerance = 7",
    "Ratings:\n- Risk tolerance: 7.5/10",
    "| Dimension | Score | Why |\n|---|---|---|\n| Risk tolerance | 7 | steady |",
    "- Risk tolerance: 7/10 - steady\n- Long-term thinking: 6/10",
    "Risk tolerance (7/10)\nLong-term thinking (6/10)",
    "**Risk tolerance**: 7/10\n**Long-term thinking**: 6/10",
]


@pytest.mark.parametrize("tail", REPORT_TAILS)
def test_a_report_never_shows_any_part_of_its_scores(tail: str) -> None:
    text = f"{BODY}\n\n{tail}"
    for end in range(len(BODY), len(text) + 1):
        visible = shown("report", text[:end])
        assert BODY.startswith(visible.rstrip()), (text[:end], visible)
        assert not re.search(r"scor|\d", visible[len("## Summary") :], re.I)
    assert shown("report", text).rstrip() == BODY


@pytest.mark.parametrize(
    ("kind", "partial"),
    [
        ("question", "Quick repl"),
        ("question", "**Quick"),
        ("question", "Possible"),
        ("question", "Quick replies (pick"),
        ("question", "1."),
        ("question", "-"),
        ("report", "## Sco"),
        ("report", "**Scores"),
        ("report", "Scores:"),
        ("report", "## 6. Sc"),
        ("report", "- Risk tolerance: 7"),
        ("report", "Risk tolerance (7/1"),
        ("report", "| Risk"),
    ],
)
def test_a_last_line_that_could_still_become_a_heading_is_held_back(
    kind: StepKind, partial: str
) -> None:
    before = QUESTION if kind == "question" else BODY
    assert shown(kind, f"{before}\n\n{partial}").rstrip() == before


@pytest.mark.parametrize(
    ("kind", "text"),
    [
        ("question", "What would you do if the quick replies you had in mind"),
        ("question", "Quickly now: what would you say to Mira?"),
        ("question", "Some people would stay. What would you do?"),
        ("question", "- Stay or go?\nWhat would you do first?"),
        ("report", "## Summary\nYou listen first, and your score on patience"),
        ("report", "## Strengths\n- You say what you think, plainly."),
        ("report", "## Summary\nYou scored the options: rent first, then savings."),
        ("scenario", "## Scores\nYou are a nurse. Quick replies:"),
    ],
)
def test_ordinary_text_is_shown_as_it_streams(kind: StepKind, text: str) -> None:
    assert shown(kind, text) == text


def test_a_list_followed_by_prose_is_shown_again() -> None:
    text = f"{QUESTION}\n1. Stay\n2. Go\nWhich would you choose, and why?"
    assert shown("question", text) == text
    assert tail_start("question", text) == len(text)


def test_what_was_shown_is_never_taken_back_while_the_text_grows() -> None:
    text = (
        f"{BODY}\n\nYou act when it is time.\n- Sleep on it\n\n"
        "## Scores (0-10)\n| Risk tolerance | 7 | steady |\n- Empathy: 8/10"
    )
    for kind in ("question", "report"):
        ends = [live_end(kind, text[:n]) for n in range(len(text) + 1)]
        for n in range(1, len(ends)):
            # Monotonic in what it shows, and what it shows is a prefix of the next.
            assert ends[n] >= ends[n - 1] or text[: ends[n]] == text[: ends[n - 1]][: ends[n]]


def test_long_texts_cost_little(tmp_path: Path) -> None:
    """Called on every chunk: a pathological text must not backtrack without end."""
    text = "- Risk tolerance is a word list here\n" * 200 + "1. Stay\n" * 200 + "| a | b\n" * 200
    for kind in ("question", "report"):
        for n in range(0, len(text), 97):
            live_end(kind, text[:n])


# The server shows live only what live_end allows (streaming.py); the pattern and the function agree.


def test_the_combined_pattern_agrees_with_live_end() -> None:
    samples = [f"{QUESTION}\n\n{tail}" for tail in QUESTION_TAILS]
    samples += [f"{BODY}\n\n{tail}" for tail in REPORT_TAILS]
    for kind in ("question", "report"):
        pattern = re.compile(LIVE_TAILS[kind], re.IGNORECASE)
        for sample in samples:
            for n in range(len(sample) + 1):
                found = pattern.search(sample[:n])
                expected = n if found is None else found.start()
                assert live_end(kind, sample[:n]) == expected, sample[:n]


# The parsers: every accepted format of the docstring's table, on a finished text.

DIMENSIONS = ("Risk tolerance", "Long-term thinking", "Emotional control", "Information seeking")


@pytest.mark.parametrize("tail", QUESTION_TAILS)
def test_question_parse_reads_every_reply_format(tail: str) -> None:
    parsed = question.parse(f"{QUESTION}\n\n{tail}\n")
    assert parsed.text == QUESTION
    assert len(parsed.replies) == 2 or tail.count("\n") == 1
    assert parsed.replies[0].startswith("Stay")


def test_question_parse_takes_unmarked_lines_under_a_heading() -> None:
    parsed = question.parse(f'{QUESTION}\n\nPossible replies:\n"I would stay"\nI would go\n')
    assert parsed == question.Question(QUESTION, ("I would stay", "I would go"))


def test_question_parse_keeps_a_list_that_is_part_of_the_question() -> None:
    text = f"Think of two things:\n1. the rent\n2. the savings\n{QUESTION}"
    assert question.parse(text) == question.Question(text, ())


@pytest.mark.parametrize("tail", REPORT_TAILS)
def test_report_parse_reads_every_score_format(tail: str) -> None:
    parsed = report.parse(f"{BODY}\n\n{tail}\n", DIMENSIONS)
    assert parsed.markdown == BODY
    assert parsed.scores["Risk tolerance"] == (8 if "7.5" in tail else 7)
    if "steady" in tail:
        assert parsed.reasons["Risk tolerance"] == "steady"


def test_report_parse_keeps_the_sections_written_after_the_scores() -> None:
    text = "## Summary\nCalm.\n\n## Scores:\n- Risk tolerance: 4\n\n## Suggestions\n- Wait.\n"
    parsed = report.parse(text, DIMENSIONS)
    assert parsed.scores == {"Risk tolerance": 4}
    assert parsed.markdown == "## Summary\nCalm.\n\n## Suggestions\n- Wait."


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        ("## Risk tolerance (7/10)", "## Risk tolerance"),
        ("- **Risk tolerance (7/10)**: you take chances", "- **Risk tolerance**: you take chances"),
        ("- Risk tolerance: 7/10 - you take chances", "- Risk tolerance: you take chances"),
        ("Risk tolerance: 7 out of 10", ""),
        ("Risk tolerance: 2 things stand out", "Risk tolerance: 2 things stand out"),
    ],
)
def test_report_parse_takes_the_models_numbers_out_of_the_body(line: str, kept: str) -> None:
    parsed = report.parse(f"## Summary\n{line}\nYou act.\n", DIMENSIONS)
    assert parsed.markdown == f"## Summary\n{kept}\nYou act.".replace("\n\n", "\n")
    assert ("Risk tolerance" in parsed.scores) == (kept != line)


def test_report_parse_reads_a_table_with_its_header_and_rule() -> None:
    text = (
        f"{BODY}\n\n## Scores\n| Dimension | Score (0-10) | Why |\n|:---|---:|---|\n"
        "| **Risk tolerance** | 7/10 | steady |\n| Long term thinking | 9 | plans |\n"
    )
    parsed = report.parse(text, DIMENSIONS)
    assert parsed.scores == {"Risk tolerance": 7, "Long-term thinking": 9}
    assert parsed.reasons == {"Risk tolerance": "steady", "Long-term thinking": "plans"}
    assert parsed.missing == ("Emotional control", "Information seeking")
    assert parsed.markdown == BODY
