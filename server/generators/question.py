"""The question steps: a prompt from the scenario and every answer so far, and the parser."""

from __future__ import annotations

import re
from dataclasses import dataclass

from server.generators.journey import Journey, Prompt, chat_prompt, transcript

REPLIES_HEADING = "Quick replies:"
MAX_REPLIES = 4
MAX_REPLY_CHARS = 80


@dataclass(frozen=True)
class Question:
    text: str
    replies: tuple[str, ...]


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
        "no preamble.\n"
        f"Then a blank line, the line {REPLIES_HEADING!r}, and 2 to 4 short first-person "
        "replies the person might give, one per line starting with '- ', each under 60 "
        "characters and taking different stances."
    )
    return chat_prompt("question", journey, user, max_tokens, step)


_REPLY_LINE = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+(.+?)\s*$")
# The heading on a line of its own (bold or not): a question that quotes an answer
# containing the words "Quick replies:" must not be cut there.
_HEADING_LINE = re.compile(
    r"^[ \t]*\**[ \t]*quick replies[ \t]*:?[ \t]*\**[ \t]*:?[ \t]*$", re.I | re.M
)
_QUOTES = "\"'\u201c\u201d\u2018\u2019"


def parse(text: str) -> Question:
    """Split the question from its quick replies; a question without replies is still valid."""
    headings = list(_HEADING_LINE.finditer(text))
    if headings:
        body, tail = text[: headings[-1].start()], text[headings[-1].end() :]
    else:
        body, tail = _split_trailing_list(text)
    replies: list[str] = []
    for line in tail.splitlines():
        match = _REPLY_LINE.match(line)
        if not match:
            continue
        reply = _unquote(match.group(1))
        if (
            reply
            and len(reply) <= MAX_REPLY_CHARS
            and reply.casefold() not in (seen.casefold() for seen in replies)
        ):
            replies.append(reply)
    question = re.sub(r"\n{3,}", "\n\n", body.strip())
    return Question(text=question, replies=tuple(replies[:MAX_REPLIES]))


def _unquote(reply: str) -> str:
    reply = reply.strip()
    while len(reply) >= 2 and reply[0] in _QUOTES and reply[-1] in _QUOTES:
        reply = reply[1:-1].strip()
    return reply.strip('"\u201c\u201d').strip()


def _split_trailing_list(text: str) -> tuple[str, str]:
    lines = text.strip().splitlines()
    cut = len(lines)
    while cut > 0 and (_REPLY_LINE.match(lines[cut - 1]) or not lines[cut - 1].strip()):
        cut -= 1
    if cut == 0:
        return text, ""
    return "\n".join(lines[:cut]), "\n".join(lines[cut:])


def render_text(question: Question) -> str:
    """The text form the model writes, used by the offline model so one parser serves both."""
    replies = "\n".join(f"- {reply}" for reply in question.replies)
    return f"{question.text}\n\n{REPLIES_HEADING}\n{replies}" if replies else question.text
