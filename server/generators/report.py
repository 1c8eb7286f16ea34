"""The report step: a prompt from the whole journey, and the parser of sections and scores."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from server.generators.journey import Journey, Prompt, chat_prompt, transcript

SECTIONS = ("Summary", "Your decision style", "Strengths", "Blind spots", "Suggestions")
SCORES_HEADING = "Scores"


@dataclass(frozen=True)
class Report:
    markdown: str
    scores: dict[str, int]
    missing: tuple[str, ...]
    reasons: dict[str, str] = field(default_factory=dict)


def build(journey: Journey, step: int, max_tokens: int) -> Prompt:
    headings = "\n".join(f"## {name}" for name in SECTIONS)
    dims = "\n".join(f"- {dim}: <0-10> - <one short reason>" for dim in journey.dimensions)
    user = (
        f"{transcript(journey)}\n\n"
        "Write the person's report in Markdown with exactly these sections, in order:\n"
        f"{headings}\n## {SCORES_HEADING}\n"
        "Quote at least three of their answers word for word (in quotation marks). "
        "Strengths, blind spots and suggestions are bullet lists; suggestions are concrete, "
        "reflective habits, not instructions. Under Scores, one line per dimension exactly "
        f"like this:\n{dims}"
    )
    return chat_prompt("report", journey, user, max_tokens, step)


_SCORES_SECTION = re.compile(rf"^#+\s*{SCORES_HEADING}\s*$", re.IGNORECASE | re.MULTILINE)


def parse(text: str, dimensions: tuple[str, ...]) -> Report:
    """The report body without its Scores section, and a 0-10 score per known dimension."""
    match = _SCORES_SECTION.search(text)
    body, scores_text = (text[: match.start()], text[match.end() :]) if match else (text, "")
    scores: dict[str, int] = {}
    reasons: dict[str, str] = {}
    for dim in dimensions:
        found = re.search(
            # "- Risk tolerance: 7 - why", "**Risk tolerance**: 7/10", "**Risk tolerance:** 7"
            rf"^\s*[-*]?\s*\**{re.escape(dim)}\**\s*[:\-\u2013\u2014]\s*\**\s*(\d{{1,2}})(?!\d)(.*)$",
            scores_text,
            re.IGNORECASE | re.MULTILINE,
        )
        if found and 0 <= int(found.group(1)) <= 10:
            scores[dim] = int(found.group(1))
            reason = _REASON_LEAD.sub("", found.group(2)).strip()
            if reason:
                reasons[dim] = reason
    missing = tuple(dim for dim in dimensions if dim not in scores)
    return Report(markdown=body.strip(), scores=scores, missing=missing, reasons=reasons)


# What separates a score from its reason: "/10", closing bold, a dash or a colon.
_REASON_LEAD = re.compile(r"^\s*(/\s*10)?\s*\**\s*[-:\u2013\u2014]?\s*")
