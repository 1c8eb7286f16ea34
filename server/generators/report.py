"""The report step: a prompt from the whole journey, and the parser of sections and scores."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from server.generators import formats
from server.generators.journey import Journey, Prompt, chat_prompt, transcript

SECTIONS = ("Summary", "Your decision style", "Strengths", "Blind spots", "Suggestions")
SCORES_HEADING = "Scores"


@dataclass(frozen=True)
class Report:
    markdown: str
    scores: dict[str, int]
    missing: tuple[str, ...]
    reasons: dict[str, str] = field(default_factory=dict)


# What each section holds, shown in place: small models fill a skeleton far better than they
# follow a description of one.
_SKELETON = {
    "Summary": "Two or three sentences on how they decide, quoting one answer word for word.",
    "Your decision style": "One sentence naming their style.",
    "Strengths": "- A strength, with the answer that shows it",
    "Blind spots": "- A blind spot, said kindly",
    "Suggestions": "- A concrete, reflective habit to try",
}


def build(journey: Journey, step: int, max_tokens: int) -> Prompt:
    sections = "\n".join(f"## {name}\n{_SKELETON[name]}" for name in SECTIONS)
    dims = "\n".join(f"- {dim}: <0-10> - <one short reason>" for dim in journey.dimensions)
    user = (
        f"{transcript(journey)}\n\n"
        "Write the person's report in Markdown, with exactly these sections in this order, "
        "replacing each line under a heading with your own words:\n"
        f"{sections}\n## {SCORES_HEADING}\n{dims}\n"
        "Quote at least three of their answers word for word (in quotation marks). Under "
        f"{SCORES_HEADING}, one line per dimension exactly as shown, with a whole number from "
        "0 to 10 and a short reason."
    )
    return chat_prompt("report", journey, user, max_tokens, step)


def parse(text: str, dimensions: tuple[str, ...]) -> Report:
    """The report body without its scores (every format formats.py accepts), and a 0-10 score
    per known dimension; a number the model put in the body is read and taken out of it."""
    cut = formats.tail_start("report", text)
    scores_text, after = formats.split_scores_section(text[cut:])
    scores, reasons = formats.read_scores(scores_text, dimensions)
    body, inline, inline_reasons = formats.strip_inline_scores(
        f"{text[:cut].rstrip()}\n\n{after.strip()}", dimensions
    )
    for dim, value in inline.items():
        if dim not in scores:
            scores[dim] = value
            if dim in inline_reasons:
                reasons[dim] = inline_reasons[dim]
    missing = tuple(dim for dim in dimensions if dim not in scores)
    markdown = re.sub(r"\n{3,}", "\n\n", body.strip())
    return Report(markdown=markdown, scores=scores, missing=missing, reasons=reasons)
