"""The step formats models write: where a question's replies and a report's scores begin.

One definition serves the live text (``live_end``: what may be shown while the model writes)
and the finished text (``tail_start``, used by question.parse and report.parse), so a line is
never shown live and then taken away at ``done``. The server alone decides what is shown (the
page gets only that), and ``LIVE_TAILS``, one pattern per kind, states the same rule as
``live_end``'s line-by-line reading (a test keeps them equal).

Accepted formats (each row is a case in tests/test_formats.py):

=========================  =====================================================  ==========
kind                       what the model wrote                                   taken as
=========================  =====================================================  ==========
question                   ``Quick replies:`` / ``Quick replies`` on its own line heading
question                   ``**Quick replies**:``, ``**Quick replies:**``         heading
question                   ``### Quick replies``, ``## 2. Quick replies``         heading
question                   ``Quick replies (pick one):``                          heading
question                   ``Possible replies:``, ``Suggested answers:``,         heading
                           ``Options:``, ``Here are some quick replies:``
question                   a bare list at the end (``- ``, ``* ``, ``1.``,        replies
                           ``2)``, ``a)``, ``•``), with or without a heading
question                   unmarked short lines after a heading                   replies
report                     ``## Scores``, ``## Scores:``, ``**Scores**``,         heading
                           ``Scores:``, ``## Scores (0-10)``, ``## 6. Scores``,
                           ``### Your scores``, ``Ratings:``, ``Scores out of 10``
report                     ``- Risk tolerance: 7 - why``, ``**Risk tolerance**:   score
                           7/10``, ``Risk tolerance (7/10)``, ``Risk tolerance =
                           7``, ``1. Risk tolerance - 7 out of 10``, ``7.5/10``
report                     a Markdown table ``| Risk tolerance | 7 | why |``      score
report                     a score line at the end without any heading            score
report                     ``Risk tolerance (7/10)`` inside the body              number
                                                                                  removed
=========================  =====================================================  ==========
"""

from __future__ import annotations

import re

from server.generators.journey import StepKind

# --- building blocks (JavaScript-compatible) -------------------------------------------

_SP = r"[ \t]"
_END = r"(?![\s\S])"  # end of the text, in both languages ($ differs between them)
# What decorates a heading before its words: "## ", "**", "6. ", "### 6. **".
_LEAD = rf"{_SP}*(?:#{{1,6}}{_SP}*)?[*_]{{0,3}}{_SP}*(?:\d{{1,2}}[.)]{_SP}*)?[*_]{{0,3}}{_SP}*"
_LEAD_PREFIX = _LEAD.replace("[.)]", "[.)]?")
# What may follow a heading's words: "(pick one)", "(0-10)", ":", "**", "**:", ":**".
_TRAIL = (
    rf"(?:{_SP}+out{_SP}+of{_SP}+10)?(?:{_SP}*\([^)\n]{{0,40}}\))?"
    rf"{_SP}*[*_]{{0,3}}{_SP}*:?{_SP}*[*_]{{0,3}}{_SP}*:?{_SP}*"
)
# The same trail while it is still being written ("Quick replies (pick", "**Scores*").
_TRAIL_PREFIX = rf"(?:{_SP}*\([^)\n]{{0,40}}\)?)?{_SP}*[*_]{{0,3}}{_SP}*:?{_SP}*[*_]{{0,3}}{_SP}*"

# The words a reply or score heading is made of: qualifiers, then one noun.
_REPLY_WORDS = (
    "here", "are", "some", "quick", "possible", "suggested", "sample", "example",
    "short", "your", "answer", "reply",
)  # fmt: skip
_REPLY_NOUNS = ("replies", "answers", "responses", "options", "choices")
_SCORE_WORDS = ("your", "the", "dimension", "final", "my")
_SCORE_NOUNS = ("scores", "score", "ratings", "rating", "scorecard")


def _alternatives(words: tuple[str, ...]) -> str:
    return "(?:" + "|".join(sorted(words, key=len, reverse=True)) + ")"


_Trie = dict[str, "_Trie"]


def _prefix_of_any(words: tuple[str, ...]) -> str:
    """A pattern matching any non-empty prefix of any of `words` (a trie of optionals)."""
    trie: _Trie = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})

    def group(node: _Trie) -> str:
        # After each letter the rest is optional: "q", "qu", ... "quick" all match.
        branches = [
            re.escape(char) + (f"(?:{group(child)})?" if child else "")
            for char, child in sorted(node.items())
        ]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"

    return group(trie)


def _heading(qualifiers: tuple[str, ...], nouns: tuple[str, ...]) -> str:
    """A whole heading line's content: up to four qualifier words, then a noun, then trail."""
    return rf"{_LEAD}(?:{_alternatives(qualifiers)}{_SP}+){{0,4}}{_alternatives(nouns)}{_TRAIL}"


def _heading_prefix(qualifiers: tuple[str, ...], nouns: tuple[str, ...]) -> str:
    """A partial last line that could still become such a heading ("Quick repl", "## Sco")."""
    words = qualifiers + nouns
    return (
        rf"{_LEAD_PREFIX}(?:{_alternatives(words)}{_SP}+){{0,4}}"
        rf"(?:{_alternatives(nouns)}{_TRAIL_PREFIX}|{_prefix_of_any(words)})?"
    )


REPLY_HEADING = _heading(_REPLY_WORDS, _REPLY_NOUNS)
SCORE_HEADING = _heading(_SCORE_WORDS, _SCORE_NOUNS)

# A list item: "- x", "* x", "• x", "1. x", "2) x", "a) x", "(b) x".
_MARKER = r"(?:[-*+\u2022]|\d{1,2}[.)]|[a-d][.)]|\([1-9a-d]\))"
LIST_LINE = rf"{_SP}*{_MARKER}{_SP}+[^\n]*"
_LIST_PREFIX = rf"{_SP}*(?:{_MARKER}|\d{{1,2}}|\()(?:{_SP}[^\n]*)?"

# A score line, whatever the label: "- **Risk tolerance**: 7/10 - why", "Empathy (8/10)",
# "1. Courage = 6". The label has one to four words; the number is 0-10, maybe "7.5".
_LABEL = r"[A-Za-z][A-Za-z'&\/-]*(?:[ \t]+[A-Za-z][A-Za-z'&\/-]*){0,3}"
_SCORE_SEP = rf"(?:{_SP}*[:=\u2013\u2014-]|{_SP}*\(|{_SP}+(?=\d))"
_NUMBER = r"\d{1,2}(?:\.\d)?(?!\d)"
_OUT_OF = rf"(?:{_SP}*\/{_SP}*10|{_SP}+out{_SP}+of{_SP}+10)"
SCORE_LINE = (
    rf"{_SP}*(?:{_MARKER}{_SP}+)?(?:#{{1,6}}{_SP}*)?[*_]{{0,2}}{_LABEL}[*_]{{0,2}}:?[*_]{{0,2}}"
    rf"{_SCORE_SEP}{_SP}*[*_]{{0,2}}{_SP}*{_NUMBER}{_OUT_OF}?[*_)]{{0,3}}"
    rf"(?:{_SP}*[-:,.;(\u2013\u2014][^\n]*)?{_SP}*"
)
# "7/1", "7 out of 1": a number's "/10" or "out of 10" still being written.
_OUT_OF_PREFIX = (
    rf"(?:{_SP}*\/{_SP}*(?:1|10)?|{_SP}+(?:o|ou|out(?:{_SP}+(?:o|of(?:{_SP}+(?:1|10)?)?)?)?))?"
)
_SCORE_PREFIX = (
    rf"{_SP}*(?:{_MARKER}{_SP}+)?(?:#{{1,6}}{_SP}*)?[*_]{{0,2}}(?:{_LABEL}{_SP}*)?[*_]{{0,2}}:?"
    rf"[*_]{{0,2}}(?:{_SCORE_SEP}{_SP}*[*_]{{0,2}}{_SP}*(?:{_NUMBER}{_OUT_OF_PREFIX}[*_)]{{0,3}})?)?"
)
TABLE_LINE = rf"{_SP}*\|[^\n]*"
_BLANK = rf"{_SP}*"


def _tail(heading: str, lines: str, partial: str) -> str:
    """From the first heading line to the end; or a run of item lines at the end; or a last
    line still being written that could become either. Each line is recognised in a lookahead
    (atomic in both languages) and then consumed plainly, so a run that fails at its last line
    is not retried in every way its lines could match (exponential backtracking)."""
    item = rf"(?:(?={lines}\n)[^\n]*\n|{_BLANK}\n)"
    last = rf"(?=(?:{lines}|{partial}){_END})[^\n]*{_END}"
    return rf"(?:^|\n)(?:{heading}(?:\n|{_END})|{item}*{last})"


class _Format:
    """One kind's tail, line by line: Python checks each line once (a few microseconds for a
    whole report) where one combined pattern would be tried at every position of the text."""

    def __init__(self, heading: str, lines: str, partial: str) -> None:
        self.pattern = _tail(heading, lines, partial)
        self.heading = re.compile(heading, re.IGNORECASE)
        self.item = re.compile(rf"{lines}|{_BLANK}", re.IGNORECASE)
        self.last = re.compile(rf"{lines}|{partial}", re.IGNORECASE)

    def tail(self, text: str) -> int:
        lines = text.split("\n")
        starts = [0]
        for line in lines[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        cut = len(text)
        if self.last.fullmatch(lines[-1]):
            first = len(lines) - 1
            while first > 0 and self.item.fullmatch(lines[first - 1]):
                first -= 1
            cut = max(starts[first] - 1, 0)
        for line, start in zip(lines, starts, strict=True):
            if start > cut:
                break
            if self.heading.fullmatch(line):
                return max(start - 1, 0)
        return cut


_FORMATS: dict[StepKind, _Format] = {
    "question": _Format(
        REPLY_HEADING,
        LIST_LINE,
        rf"(?:{_LIST_PREFIX}|{_heading_prefix(_REPLY_WORDS, _REPLY_NOUNS)})",
    ),
    "report": _Format(
        SCORE_HEADING,
        rf"(?:{SCORE_LINE}|{TABLE_LINE})",
        rf"(?:{TABLE_LINE}|{_SCORE_PREFIX}|{_heading_prefix(_SCORE_WORDS, _SCORE_NOUNS)})",
    ),
}
# Each kind's rule as one pattern (a test keeps it equal to live_end): the offset of its first
# match is live_end's answer.
LIVE_TAILS = {kind: form.pattern for kind, form in _FORMATS.items()}


def live_end(kind: StepKind, text: str) -> int:
    """How many leading code points of `text` may be shown while the model still writes: never
    a quick-reply tail or score lines, nor a last line that could still become their heading."""
    form = _FORMATS.get(kind)
    return len(text) if form is None else form.tail(text)


def tail_start(kind: StepKind, text: str) -> int:
    """Where the replies or scores of a finished text begin (its length when it has none).
    The finished text's last line is complete, so only whole headings and items count."""
    return min(live_end(kind, text + "\n"), len(text))


# --- reading the tail of a finished text -------------------------------------------------

_ITEM = re.compile(rf"{_SP}*{_MARKER}{_SP}+(.*\S){_SP}*")
_HEADING_LINE = re.compile(
    rf"{_SP}*(?:#{{1,6}}{_SP}+[^\n]*|\*\*[^*\n]+\*\*{_SP}*:?|__[^_\n]+__{_SP}*:?){_SP}*"
)
_TABLE_RULE = re.compile(rf"{_SP}*\|?(?:{_SP}*:?-{{2,}}:?{_SP}*\|?)+{_SP}*")
_SCORE_LINE = re.compile(SCORE_LINE, re.IGNORECASE)
_TABLE = re.compile(TABLE_LINE)


def tail_begun(held: str) -> bool:
    """Whether the text held back from a live step (what follows live_end) is its tail for
    certain: its first line is whole and no list item, so it is the replies' or the scores'
    heading (or a score table), the only such lines held once whole. Held items alone may
    still turn out to be a list of the text itself."""
    line, newline, _ = held.lstrip().partition("\n")
    return bool(newline) and _ITEM.fullmatch(line) is None


def reply_items(tail: str) -> list[str]:
    """The replies in a question's tail: its list items, or its short unmarked lines when the
    model wrote them under a heading without markers."""
    lines = [line for line in tail.splitlines() if line.strip()]
    lines = [line for line in lines if not _FORMATS["question"].heading.fullmatch(line)]
    marked = [found.group(1) for line in lines if (found := _ITEM.fullmatch(line))]
    return marked if marked else [line.strip() for line in lines]


def _dimension(name: str) -> str:
    # "Long-term thinking", "Long term thinking", "long-term  thinking" are the same label.
    return r"[ \t-]+".join(re.escape(word) for word in re.split(r"[\s-]+", name.strip()))


def _score_line(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"{_SP}*(?:{_MARKER}{_SP}+)?(?:#{{1,6}}{_SP}*)?([*_]{{0,2}})({_dimension(name)})[*_]{{0,2}}"
        rf":?[*_]{{0,2}}{_SCORE_SEP}{_SP}*[*_]{{0,2}}{_SP}*({_NUMBER})({_OUT_OF})?[*_)]{{0,3}}(.*)",
        re.IGNORECASE,
    )


def _table_row(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"{_SP}*\|?{_SP}*[*_]{{0,2}}{_dimension(name)}[*_]{{0,2}}{_SP}*\|{_SP}*[*_]{{0,2}}"
        rf"({_NUMBER})({_OUT_OF})?[*_]{{0,2}}{_SP}*(.*)",
        re.IGNORECASE,
    )


# What separates a score from its reason: "/10", closing marks, a dash, a colon, a pipe.
_REASON_LEAD = re.compile(r"^[\s*_)|:\-\u2013\u2014,.;]*")
_REASON_END = re.compile(r"[\s|*_]*$")


def _reason(rest: str) -> str:
    reason = _REASON_END.sub("", _REASON_LEAD.sub("", rest))
    return re.sub(r"\s*\|\s*", "; ", reason)


def _value(number: str) -> int | None:
    value = round(float(number) + 1e-9)
    return value if 0 <= value <= 10 else None


def split_scores_section(tail: str) -> tuple[str, str]:
    """A report's tail as (scores, what follows them): sections the model wrote after its
    scores ("## Suggestions") belong to the report's body, not to the chart."""
    lines = tail.split("\n")
    heading_seen = False
    for number, line in enumerate(lines):
        if not line.strip():
            continue
        if not heading_seen:
            heading_seen = True
            continue
        if _HEADING_LINE.fullmatch(line) and not _SCORE_LINE.fullmatch(line):
            return "\n".join(lines[:number]), "\n".join(lines[number:])
    return tail, ""


def read_scores(
    scores_text: str, dimensions: tuple[str, ...]
) -> tuple[dict[str, int], dict[str, str]]:
    """A 0-10 score (and its reason) per dimension found in a report's scores section."""
    scores: dict[str, int] = {}
    reasons: dict[str, str] = {}
    lines = scores_text.splitlines()
    for dim in dimensions:
        line_pattern, row_pattern = _score_line(dim), _table_row(dim)
        for line in lines:
            found = line_pattern.fullmatch(line)
            number, rest = (found.group(3), found.group(5)) if found else ("", "")
            if not found and (row := row_pattern.fullmatch(line)):
                number, rest = row.group(1), row.group(3)
            value = _value(number) if number else None
            if value is not None:
                scores[dim] = value
                if reason := _reason(rest):
                    reasons[dim] = reason
                break
    return scores, reasons


def strip_inline_scores(
    body: str, dimensions: tuple[str, ...]
) -> tuple[str, dict[str, int], dict[str, str]]:
    """Scores the model wrote in the body ("## Risk tolerance (7/10)", "- **Empathy**: 8/10 -
    you listen") are read, and their numbers taken out: the chart shows the scores once."""
    scores: dict[str, int] = {}
    reasons: dict[str, str] = {}
    kept: list[str] = []
    patterns = {dim: _score_line(dim) for dim in dimensions}
    line: str | None
    for line in body.split("\n"):
        for dim, pattern in patterns.items():
            found = pattern.fullmatch(line)
            # Only an explicit "n/10" or "(n)" is a score here: "Courage: 2 things" is prose.
            if not found or not (found.group(4) or "(" in line[found.end(2) : found.start(3)]):
                continue
            value = _value(found.group(3))
            if value is None:
                continue
            scores.setdefault(dim, value)
            reason = _reason(found.group(5))
            if reason:
                reasons.setdefault(dim, reason)
            label = line[: found.end(2)] + found.group(1)
            if line.lstrip().startswith("#"):
                line = label
            elif reason:
                line = f"{label}: {reason}"
            else:
                line = None
            break
        if line is not None:
            kept.append(line)
    return "\n".join(kept), scores, reasons
