"""The offline writer's transparent rules: a score per dimension and a decision style."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Literal

from server.generators.bank import Common, Dimension, Reply, Style, normal
from server.generators.journey import Exchange
from server.generators.reading import Reading
from server.generators.wording import blank_prefix, category_hits, masked

Direction = Literal["high", "low", "none"]
# A hedged answer ("maybe", "not sure") still leans, but counts half.
HEDGED_WEIGHT = 0.5
# A reply chosen, or typed as an answer's first words, outweighs one signal beside it.
REPLY_VOTES = 2
# The words per answer at or below which answers are called brief.
BRIEF_WORDS = 6


@dataclass(frozen=True)
class Answered:
    """One exchange as read: the text, and a quick reply it matched (clicked, or a bare
    yes/no read through the question's own replies), with that reply's dimension."""

    exchange: Exchange
    reading: Reading
    reply: tuple[str, Reply] | None = None
    clicked: bool = False
    # The reply was said in other words, not typed: it leans like one signal, not more.
    loose: bool = False


@dataclass(frozen=True)
class DimensionScore:
    label: str
    # None: no evidence either way, so "not enough to go on" rather than a number.
    score: int | None
    high_hits: tuple[str, ...]
    low_hits: tuple[str, ...]
    # Quick replies chosen as answers (their text as the person sent it), by lean.
    high_replies: tuple[str, ...] = ()
    low_replies: tuple[str, ...] = ()
    # Typed answers read as a reply, as (answer, reply, how): how is "starts" for an answer
    # that opens with the reply's words or is a bare yes or no read as the reply that starts
    # with it, "says" for one that says the reply in other words. Never a reply clicked.
    high_short: tuple[tuple[str, str, str], ...] = ()
    low_short: tuple[tuple[str, str, str], ...] = ()
    ups: float = 0.0
    downs: float = 0.0

    @property
    def direction(self) -> Direction:
        if self.score is None or self.score == 5:
            return "none"
        return "high" if self.score > 5 else "low"


def score(dims: list[Dimension], answered: list[Answered], common: Common) -> list[DimensionScore]:
    """Per dimension: 10 * (high + 1) / (high + low + 2), or no number without evidence.

    Each answer is one vote per dimension, toward the side it leans: a quick reply chosen
    (or typed as the start of an answer, or a bare yes or no read as the question's reply
    that starts with it) decides its own question's dimension; elsewhere the signals found
    in English answers in the person's own words decide, a close negation turning a signal
    around. A hedged answer ("maybe", "not sure") votes half; an ironic one only through
    its reply; an answer leaning both ways at once votes half each way.
    """
    ups: dict[str, float] = dict.fromkeys((d.label for d in dims), 0.0)
    downs: dict[str, float] = dict.fromkeys((d.label for d in dims), 0.0)
    found: dict[str, tuple[list[str], list[str]]] = {d.label: ([], []) for d in dims}
    replies: dict[str, tuple[list[str], list[str]]] = {d.label: ([], []) for d in dims}
    echoes: dict[str, tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]] = {
        d.label: ([], []) for d in dims
    }
    for item in answered:
        reading = item.reading
        # A reply said first is a plain answer, whatever doubt follows it ("…, but it might fail").
        replied = item.reply is not None and item.reply[1].lean != "neutral"
        weight = HEDGED_WEIGHT if "doubt" in reading.cues and not replied else 1.0
        # Per dimension, how far this answer leans: its reply's own dimension starts at
        # +REPLY_VOTES or -REPLY_VOTES, and every signal beside it adds or takes one.
        lean: Counter[str] = Counter()
        if item.reply is not None and item.reply[1].lean != "neutral" and item.reply[0] in found:
            label, reply = item.reply
            side = 0 if reply.lean == "high" else 1
            votes = 1 if item.loose else REPLY_VOTES
            lean[label] += votes if side == 0 else -votes
            if item.clicked:
                replies[label][side].append(" ".join(item.exchange.answer.split()))
            else:
                how = "says" if item.loose else "starts"
                echoes[label][side].append((_shown(item.exchange.answer), reply.text, how))
        if not item.clicked and reading.typed_english and "irony" not in reading.cues:
            text = masked(normal(item.exchange.answer), common.masks)
            if item.reply is not None and not item.loose:
                # The reply's own words carry its lean, neutral or not, and count no further.
                text = blank_prefix(text, item.reply[1].text)
            for label, (high, low) in category_hits(text, dims).items():
                found[label][0].extend(high)
                found[label][1].extend(low)
                lean[label] += len(high) - len(low)
                if high and len(high) == len(low) and lean[label] == 0:
                    # Leaning both ways at once: half a vote each way.
                    ups[label] += weight / 2
                    downs[label] += weight / 2
        for label, net in lean.items():
            if net > 0:
                ups[label] += weight
            elif net < 0:
                downs[label] += weight
    result = []
    for dim in dims:
        up, down = ups[dim.label], downs[dim.label]
        value = None if up + down == 0 else max(0, min(10, round(10 * (up + 1) / (up + down + 2))))
        result.append(
            DimensionScore(
                dim.label,
                value,
                tuple(dict.fromkeys(found[dim.label][0])),
                tuple(dict.fromkeys(found[dim.label][1])),
                tuple(replies[dim.label][0]),
                tuple(replies[dim.label][1]),
                tuple(echoes[dim.label][0]),
                tuple(echoes[dim.label][1]),
                up,
                down,
            )
        )
    return result


def _shown(answer: str) -> str:
    """An answer as a score line names it: whole when short, else its first words."""
    words = answer.split()
    return " ".join(words) if len(words) <= 8 else " ".join(words[:8]) + "\u2026"


def style(answered: list[Answered], common: Common) -> tuple[Style, str]:
    """The decision style the person's own words show, and a note that qualifies it
    (why no style can be named, or that the answers were brief)."""
    styles = common.styles
    typed = [a.reading for a in answered if a.reading.typed_english and not a.clicked]
    foreign = [a.reading for a in answered if a.reading.kind == "foreign"]
    counts = Counter(cue for reading in typed for cue in reading.cues)
    words = sum(reading.words for reading in typed)
    per_answer = words / max(1, len(typed))
    notes = common.style_notes

    def unclear(reason: str) -> tuple[Style, str]:
        note = notes.get(reason, "")
        if foreign:
            language = Counter(r.language for r in foreign).most_common(1)[0][0]
            note = note.replace("<language>", language)
        return styles["unclear"], note

    if len(foreign) * 2 > len(answered):
        return unclear("language")
    if counts["doubt"] >= 3:
        return styles["exploratory"], _brief(per_answer, notes)
    if len(typed) < 2 or words < 12:
        if answered and all(a.clicked for a in answered):
            return unclear("quick")
        return unclear("short")
    worry = counts["worry"]
    if worry >= 2 and worry >= counts["certainty"]:
        chosen = "cautious"
    elif counts["certainty"] >= 2 and counts["certainty"] > counts["doubt"]:
        chosen = "decisive"
    elif counts["doubt"] >= 2:
        chosen = "exploratory"
    elif counts["reason"] >= 2 or per_answer >= 25:
        chosen = "deliberate"
    elif counts["gut"] + counts["feeling"] + counts["weary"] >= 2:
        chosen = "intuitive"
    else:
        chosen = "balanced"
    return styles[chosen], _brief(per_answer, notes)


def _brief(per_answer: float, notes: dict[str, str]) -> str:
    return notes.get("brief", "") if per_answer <= BRIEF_WORDS else ""
