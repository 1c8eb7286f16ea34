"""The question steps: a prompt from the scenario and every answer so far, and the parser."""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.generators import formats
from server.generators.journey import Journey, Prompt, chat_prompt, transcript

REPLIES_HEADING = "Quick replies:"
MAX_REPLIES = 4
MAX_REPLY_CHARS = 80


@dataclass(frozen=True)
class Question:
    text: str
    replies: tuple[str, ...]


# The exact format, shown once: small models follow an example far better than a description.
# No names in it: SmolLM2-135M carried the example's "Sam" into its questions.
EXAMPLE = (
    "What would you tell your friend before the meeting, and why?\n\n"
    f"{REPLIES_HEADING}\n- I'd tell him today\n- I'd wait until I know more\n- I'd ask a friend first"
)


def build(journey: Journey, step: int, max_tokens: int) -> Prompt:
    number = len(journey.exchanges) + 1
    focus = journey.dimensions[(number - 1) % len(journey.dimensions)]
    reacting = (
        "React to the person's last answer: refer to something specific they said "
        "(a reason, a worry, a priority) and follow it up. "
        if journey.exchanges
        else ""
    )
    user = (
        f"{transcript(journey)}\n\n"
        f"Write follow-up question {number} of {journey.questions_total}. {reacting}"
        f"Probe the dimension {focus!r}. One or two sentences, open-ended, second person, "
        "ending with a question mark, no preamble.\n"
        f"Then a blank line, the line {REPLIES_HEADING!r}, and 2 to 4 short first-person "
        "replies the person might give, one per line starting with '- ', each under 60 "
        "characters and taking different stances.\n"
        f"The format, for a different story:\n{EXAMPLE}"
    )
    return chat_prompt("question", journey, user, max_tokens, step)


_QUOTES = "\"'\u201c\u201d\u2018\u2019"


def parse(text: str) -> Question:
    """Split the question from its quick replies (every format formats.py accepts); a question
    without replies is still valid."""
    cut = formats.tail_start("question", text)
    replies: list[str] = []
    for item in formats.reply_items(text[cut:]):
        reply = _unquote(item)
        if (
            reply
            and len(reply) <= MAX_REPLY_CHARS
            and reply.casefold() not in (seen.casefold() for seen in replies)
        ):
            replies.append(reply)
    question = re.sub(r"\n{3,}", "\n\n", text[:cut].strip())
    return Question(text=question, replies=tuple(replies[:MAX_REPLIES]))


def _unquote(reply: str) -> str:
    reply = reply.strip()
    while len(reply) >= 2 and reply[0] in _QUOTES and reply[-1] in _QUOTES:
        reply = reply[1:-1].strip()
    return reply.strip('"\u201c\u201d').strip()


def render_text(question: Question) -> str:
    """The text form the model writes, used by the offline model so one parser serves both."""
    replies = "\n".join(f"- {reply}" for reply in question.replies)
    return f"{question.text}\n\n{REPLIES_HEADING}\n{replies}" if replies else question.text
