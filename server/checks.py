"""What a finished model-written step must pass before it counts as the model's."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from server.generators import formats
from server.generators import question as question_gen
from server.generators.journey import LABEL_ANSWER, SYSTEM_PROMPT, Prompt, transcript
from server.reasons import FailureReason

Outcome = Literal["passed", "trimmed"]

# How long a run of the prompt's own words must be to count as an echo: long enough that
# ordinary phrases ("in the second person", "what would you do") never reach it.
ECHO_WORDS = 7
# The least a scenario must keep to be worth reading once trimmed.
MIN_SCENARIO_WORDS = 60
MIN_REPORT_WORDS = 40
TRIMMED_NOTE = "The model ran out of room, so its last unfinished sentence was left out."


@dataclass(frozen=True)
class Verdict:
    """The text to keep, or why the step must fall back (`reason`), and what was done."""

    text: str
    reason: FailureReason | None = None
    outcome: Outcome | FailureReason = "passed"
    detail: str = ""
    note: str | None = None


def check(prompt: Prompt, text: str, finish_reason: str | None) -> Verdict:
    """Echoes first (they make any text unusable), then the token cap: a step cut by it is
    trimmed to its last whole sentence and kept only if what is left is still a usable step."""
    echo = echoed(prompt, text)
    if echo is not None:
        return Verdict(text, echo[0], echo[0], echo[1])
    if finish_reason != "length":
        return Verdict(text)
    kept = trim(prompt, text)
    problem = unusable(prompt, kept)
    if problem is not None:
        detail = f"cut by its token cap ({prompt.max_tokens}); after trimming, {problem}"
        return Verdict(kept, "token_cap", "token_cap", detail)
    dropped = len(text) - len(kept)
    return Verdict(kept, None, "trimmed", f"{dropped} characters dropped", TRIMMED_NOTE)


# --- echoes ----------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.casefold().replace("\u2019", "'"))


_BREAK = "\x00"  # where a run of words may not continue (a name taken out)


def _runs(text: str, size: int = ECHO_WORDS) -> set[tuple[str, ...]]:
    runs: set[tuple[str, ...]] = set()
    for part in text.split(_BREAK):
        words = _words(part)
        runs.update(tuple(words[i : i + size]) for i in range(len(words) - size + 1))
    return runs


@dataclass(frozen=True)
class _Source:
    """The runs of words of what we told the model, and the words they start with."""

    runs: frozenset[tuple[str, ...]]
    starts: frozenset[str]


@functools.lru_cache(maxsize=32)
def _source(text: str) -> _Source:
    """Made once per text: the system prompt is the same for every step."""
    runs = frozenset(_runs(text))
    return _Source(runs, frozenset(run[0] for run in runs))


def _repeated(
    parts: list[list[str]], source: _Source, size: int = ECHO_WORDS
) -> set[tuple[str, ...]]:
    """The runs of the model's words that are runs of the source's: a run is only built where
    a word could start one, not at every word of the text (a step's checks cost ~0.2 ms when
    every run of the text was built and intersected, bench/RESULTS.md)."""
    found: set[tuple[str, ...]] = set()
    for words in parts:
        for i in range(len(words) - size + 1):
            if words[i] in source.starts:
                run = tuple(words[i : i + size])
                if run in source.runs:
                    found.add(run)
    return found


def _instructions(prompt: Prompt) -> str:
    """The user message without the journey's own text (the scenario, questions and answers
    the model is asked to quote): what is left is what we told it to do."""
    user = prompt.messages[-1]["content"]
    if prompt.kind != "scenario":
        user = user.replace(transcript(prompt.journey), " ")
    # The area's dimensions may be named in any step, in the order we listed them.
    for name in (*prompt.journey.dimensions, prompt.journey.category_title):
        user = re.sub(re.escape(name), _BREAK, user, flags=re.I)
    return user


def echoed(prompt: Prompt, text: str) -> tuple[FailureReason, str] | None:
    """The system prompt, the instructions, the variation seed or the labels that mark the
    person's answers as data, repeated in the model's text."""
    lowered = text.casefold()
    # A short seed (a test's 7) is any number; a session's is up to ten digits, never chance.
    seed = str(prompt.journey.seed)
    # The plain `in` first: the regex's look-around at every position was most of its cost.
    if "variation seed" in lowered or (
        len(seed) >= 5 and seed in text and re.search(rf"(?<!\d){seed}(?!\d)", text)
    ):
        return "echoed_seed", "the variation seed appears in the text"
    label = LABEL_ANSWER.casefold()
    if label in lowered or ("(quoted" in lowered and re.search(r"\banswer \d+ \(quoted", lowered)):
        return "echoed_labels", f"the label {LABEL_ANSWER!r} appears in the text"
    said = [_words(part) for part in text.split(_BREAK)]
    for source, name in ((SYSTEM_PROMPT, "system prompt"), (_instructions(prompt), "instructions")):
        shared = _repeated(said, _source(source))
        if shared:
            return "echoed_prompt", f"{name} repeated: {' '.join(min(shared))!r}"
    return None


# --- the token cap -----------------------------------------------------------------------

# A sentence ends at . ! ? or an ellipsis, maybe closed by quotes or brackets, then a space.
_SENTENCE_END = re.compile(r"[.!?\u2026][\"'\u201d\u2019)\]*_]*(?=\s|$)")
_DANGLING = re.compile(
    r"(?:\n[ \t]*(?:#{1,6}[^\n]*|\*\*[^\n]*\*\*:?|[-*+\u2022]|\d+[.)])?[ \t]*)+$"
)


def trim(prompt: Prompt, text: str) -> str:
    """The text up to its last whole sentence or whole line, without a heading or list marker
    left hanging at the end; a cut inside the replies or scores only loses the unfinished line."""
    tail = formats.tail_start(prompt.kind, text)
    if tail < len(text) and "\n" in text[tail + 1 :]:
        return text[: text.rindex("\n")].rstrip()
    body = text[:tail]
    ends = [found.end() for found in _SENTENCE_END.finditer(body)]
    # A line followed by another line is whole (a list item needs no full stop).
    cut = max(ends[-1] if ends else 0, body.rstrip().rfind("\n"))
    kept = body[: max(cut, 0)].rstrip()
    while True:
        shorter = _DANGLING.sub("", kept).rstrip()
        if shorter == kept:
            return kept
        kept = shorter


_QUOTED = re.compile(r"\"[^\"\n]*\"|\u201c[^\u201d\n]*\u201d")


def unusable(prompt: Prompt, text: str) -> str | None:
    """Why a trimmed step is no longer a step worth showing, or None when it still is."""
    if prompt.kind == "question":
        # A "?" inside a quotation ("He said, \"You know what?\"") does not ask the person.
        asked = _QUOTED.sub(" ", question_gen.parse(text).text)
        return None if "?" in asked else "no question is left"
    words = len(_words(text))
    if prompt.kind == "scenario":
        return None if words >= MIN_SCENARIO_WORDS else f"only {words} words are left"
    headings = sum(
        1
        for name in ("Summary", "decision style", "Strengths", "Blind spots", "Suggestions")
        if re.search(rf"^[#* \t]*(?:\d+\.\s*)?(?:your\s+)?{name}", text, re.I | re.M)
    )
    if headings < 2 or words < MIN_REPORT_WORDS:
        return f"only {headings} of the report's sections and {words} words are left"
    return None
