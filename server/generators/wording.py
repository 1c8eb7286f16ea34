"""How the offline writer reads and quotes answers: signal matching and clean excerpts."""

from __future__ import annotations

import re

from server.generators.bank import Dimension, normal

QUOTE_CHARS = 110

_NEGATORS = frozenset({"not", "no", "never", "cannot", "hardly", "without"})
_CLAUSE_END = re.compile(r"[.,;:!?\n]")
_TRAILING = ".,;:!?\u2026-\u2013\u2014 "


def flat(text: str) -> str:
    """Normalised text with its spacing collapsed, for comparing an answer with a reply."""
    return " ".join(normal(text).split())


def negated(text: str, start: int) -> bool:
    """A negation among the three words before `start`, within the same clause."""
    clause = _CLAUSE_END.split(text[:start])[-1]
    return any(word in _NEGATORS or word.endswith("n't") for word in clause.split()[-3:])


def spans(text: str, signal: str) -> list[tuple[int, int]]:
    """Where a (normalised) signal occurs in normalised text as whole words, not negated."""
    pattern = rf"(?<!\w){re.escape(signal)}(?!\w)"
    return [
        (found.start(), found.end())
        for found in re.finditer(pattern, text)
        if not negated(text, found.start())
    ]


def mentions(text: str, signal: str) -> bool:
    return bool(spans(text, signal))


def signal_hits(text: str, dim: Dimension) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The high and low signals found, in order of appearance; longest match wins a span."""
    found = [
        (start, end, signal, high)
        for high, signals in ((True, dim.signals_high), (False, dim.signals_low))
        for signal in signals
        for start, end in spans(text, signal)
    ]
    found.sort(key=lambda hit: (hit[0] - hit[1], hit[0]))
    taken: list[tuple[int, int, str, bool]] = []
    for hit in found:
        if not any(hit[0] < other[1] and other[0] < hit[1] for other in taken):
            taken.append(hit)
    taken.sort()
    high = tuple(dict.fromkeys(signal for _, _, signal, is_high in taken if is_high))
    low = tuple(dict.fromkeys(signal for _, _, signal, is_high in taken if not is_high))
    return high, low


def excerpt(text: str, limit: int = QUOTE_CHARS) -> str:
    """The text on one line, cut at a word boundary with an ellipsis when it is long."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit + 1].rsplit(" ", 1)[0] if " " in flat[:limit] else flat[:limit]
    return cut.rstrip(_TRAILING) + "\u2026"


def clause_around(answer: str, marker: str) -> str:
    """The sentence holding the marker, trimmed to start at it when the sentence is long."""
    flat = " ".join(answer.split())
    for sentence in re.split(r"(?<=[.!?])\s+", flat):
        found = spans(normal(sentence), marker)
        if not found:
            continue
        at = found[0][0]
        if len(sentence) > QUOTE_CHARS and at > 0:
            sentence = sentence[at:]
        # A question or exclamation keeps its mark; a full stop or comma is the template's job.
        return excerpt(sentence.rstrip(".,;:-\u2013\u2014 ") or sentence)
    return excerpt(flat)


def fill(template: str, excerpt: str) -> str:
    return end_sentence(template.replace("<quote>", escape_md(excerpt)))


def quote(answer: str) -> str:
    """An answer quoted word for word (shortened only when long), safe inside Markdown."""
    return f"\u201c{escape_md(excerpt(answer))}\u201d"


_SENTENCE_END = re.compile(r"([.!?])([\u201d\u2019\"')]*)\.?$")


def end_sentence(text: str) -> str:
    """End with one full stop: a quote that already ends a sentence gets no second one."""
    text = text.rstrip()
    found = _SENTENCE_END.search(text)
    if found:
        return text[: found.end(2)]
    return text if text.endswith("\u2026") else text + "."


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def escape_md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)
