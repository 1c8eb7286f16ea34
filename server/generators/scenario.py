"""The scenario step: a varied prompt per session and the clean-up of the finished text."""

from __future__ import annotations

import random
import re

from server.generators.journey import Journey, Prompt, chat_prompt

PERSONAS = (
    "a nurse in her late twenties",
    "a retired bus driver",
    "a first-year university student",
    "a self-employed carpenter with two children",
    "a software tester who just moved cities",
    "a restaurant owner in a small town",
    "a single father working night shifts",
    "a graduate living with their parents",
    "a primary-school teacher close to retirement",
    "a freelance translator",
    "a warehouse team lead",
    "a musician with a day job",
)
STAKES = (
    "a modest sum that still matters",
    "a relationship that has lasted years",
    "a reputation built slowly",
    "a deadline at the end of the week",
    "someone else's trust",
    "a chance that will not come back",
    "their own health and energy",
    "a promise made long ago",
)
SETTINGS = (
    "a crowded city",
    "a quiet village",
    "a seaside town out of season",
    "a suburb where everyone knows each other",
    "a new country",
    "a family home being sold",
    "a busy workplace",
    "a long train journey",
)


def variation(seed: int) -> tuple[str, str, str]:
    """Persona, stakes and setting for one session, so two people do not get the same story."""
    rng = random.Random(seed)
    return rng.choice(PERSONAS), rng.choice(STAKES), rng.choice(SETTINGS)


def build(journey: Journey, max_tokens: int) -> Prompt:
    persona, stakes, setting = variation(journey.seed)
    user = (
        f"Write a decision scenario in the life area {journey.category_title!r}.\n"
        f"The reader is {persona}, in {setting}; at stake: {stakes}.\n"
        "120 to 250 words, second person, present tense, two or three short paragraphs, "
        "no title, no headings, no lists. Make it concrete (names, amounts, a deadline) "
        "and balanced: no option is obviously right. End with the decision the reader faces, "
        "without asking them questions and without giving advice.\n"
        f"It should let a reader reveal: {', '.join(journey.dimensions)}.\n"
        "Invent the names and details."
        # No seed in the prompt: models copied it into the story. The persona, stakes and
        # setting vary by seed, and the response cache is keyed by session (cache.py).
    )
    return chat_prompt("scenario", journey, user, max_tokens, 0)


_HEADING = re.compile(r"^\s*(#+\s.*|\*\*[^*]+\*\*\s*|title:.*)$", re.IGNORECASE)


def parse(text: str) -> str:
    """The finished scenario: a leading title or heading line dropped, spacing tidied."""
    lines = text.strip().splitlines()
    while lines and (_HEADING.match(lines[0]) or not lines[0].strip()):
        lines.pop(0)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
