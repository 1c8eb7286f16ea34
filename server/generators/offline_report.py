"""The offline writer's report: summary, style, strengths and blind spots that agree with the
scores, suggestions, and a score line per dimension that shows its evidence."""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING

from server.generators import report as report_gen
from server.generators.bank import normal
from server.generators.journey import Journey
from server.generators.scoring import BRIEF_WORDS, Answered, DimensionScore, style
from server.generators.wording import (
    end_sentence,
    escape_md,
    excerpt_around,
    leaning_spans,
    masked,
    quote,
    signal_hits,
)

if TYPE_CHECKING:
    from server.generators.offline import OfflineWriter

SHORT_ANSWER_WORDS = 5
NOT_ENOUGH = "not enough to go on"
NO_STRENGTH = (
    "Your answers did not lean clearly enough on any dimension to name a strength with "
    "confidence. Answers that give your reasons paint a sharper picture."
)
# When the answers were not brief, it is the dimensions that did not lean, not the answers.
NO_STRENGTH_READ = (
    "None of these dimensions leaned high in your answers, so no strength is named from "
    "them; the scores below show where each one stood and which words moved it."
)
NO_BLIND_SPOT = "No dimension leaned low in your answers, so no blind spot is named."


def compose(writer: OfflineWriter, journey: Journey) -> str:
    answered = writer.answered(journey)
    common = writer.bank.common
    scores = writer.scores(journey)
    rng = random.Random(journey.seed * 7 + len(answered))
    chosen, note = style(answered, common)
    style_text = f"**{chosen.name}.** {chosen.text}" + (f" {note}" if note else "")
    strengths, blind = _points(writer, journey, answered, scores)
    suggestions = _suggestions(writer, journey, scores, rng)
    closing = rng.choice(common.closing)
    return "\n\n".join(
        [
            "## Summary",
            _summary(writer, journey, answered),
            "## Your decision style",
            style_text,
            "## Strengths",
            "\n".join(f"- {line}" for line in strengths),
            "## Blind spots",
            "\n".join(f"- {line}" for line in blind),
            "## Suggestions",
            "\n".join(f"- {line}" for line in suggestions),
            closing,
            f"## {report_gen.SCORES_HEADING}",
            "\n".join(score_line(s) for s in scores),
        ]
    )


def _summary(writer: OfflineWriter, journey: Journey, answered: list[Answered]) -> str:
    if not answered:
        return f"You looked at a decision about {journey.category_title.lower()}."
    picks = [(0, "You started by saying", "Asked {q}, you started with", "first chose")]
    if len(answered) > 2:
        picks.append(
            (
                len(answered) // 2,
                "Asked to look closer, you answered",
                "Asked {q}, you answered",
                "chose",
            )
        )
    if len(answered) > 1:
        picks.append(
            (len(answered) - 1, "By the end you said", "Finally, asked {q}, you said", "chose")
        )
    parts = []
    for index, plain, with_question, chose in picks:
        item = answered[index]
        asked = writer.asked(journey, item.exchange.question)
        answer = item.exchange.answer
        if item.clicked:
            # A quick reply is the person's choice, not their words.
            with_question = with_question.rsplit(", you ", 1)[0] + f", you {chose}"
        # A short answer (often a quick reply) means little without what it answered.
        if asked and (len(answer.split()) <= SHORT_ANSWER_WORDS or item.reading.kind == "wordless"):
            lead = with_question.format(q=f"\u201c{escape_md(asked)}\u201d")
        else:
            lead = plain
        said = "nothing in words" if item.reading.kind == "wordless" else quote(answer)
        parts.append(end_sentence(f"{lead} {said}"))
    foreign = [a.reading.language for a in answered if a.reading.kind == "foreign"]
    if foreign:
        language = Counter(foreign).most_common(1)[0][0]
        count = "All" if len(foreign) == len(answered) else f"{len(foreign)}"
        parts.append(
            f"{count} of your answers {'is' if len(foreign) == 1 else 'are'} in {language}. "
            "This built-in writer reads English only, so it keeps them as you wrote them but "
            "does not score them or guess at what they mean."
        )
    return " ".join(parts)


def _points(
    writer: OfflineWriter, journey: Journey, answered: list[Answered], scores: list[DimensionScore]
) -> tuple[list[str], list[str]]:
    """Strengths lean high and blind spots low, so no blind spot ever scores above a strength;
    a dimension the answers did not touch is named as such, never given a number."""
    # With fewer than four dimensions the two lists must not both take two.
    room = min(2, max(1, len(scores) // 2))
    high = sorted(
        (s for s in scores if s.direction == "high"), key=lambda s: (-(s.score or 0), s.label)
    )
    low = sorted((s for s in scores if s.direction == "low"), key=lambda s: (s.score or 0, s.label))
    unread = [s for s in scores if s.score is None]
    strengths = [_point(writer, journey, answered, s, high=True) for s in high[:room]]
    blind = [_point(writer, journey, answered, s, high=False) for s in low[:2]]
    for s in unread[: max(0, min(2, len(scores) - len(strengths)) - len(blind))]:
        dim = writer.dimension(journey, s.label)
        blind.append(
            f"**{dim.label}** ({NOT_ENOUGH}): your answers said too little about this to "
            "read it either way, so it may be worth a thought of its own."
        )
    typed = [a.reading.words for a in answered if a.reading.typed_english and not a.clicked]
    brief = not typed or sum(typed) / len(typed) <= BRIEF_WORDS
    return strengths or [NO_STRENGTH if brief else NO_STRENGTH_READ], blind or [NO_BLIND_SPOT]


def _point(
    writer: OfflineWriter,
    journey: Journey,
    answered: list[Answered],
    score: DimensionScore,
    *,
    high: bool,
) -> str:
    dim = writer.dimension(journey, score.label)
    sentence = dim.strength if high else dim.blind_spot
    head = f"**{dim.label}** ({score.score}/10): {sentence}"
    evidence = _evidence(writer, journey, answered, score.label, high=high)
    if evidence:
        # Quote the words that earned the score, not merely the answer's first words.
        text = masked(normal(evidence), writer.bank.common.masks)
        shown = excerpt_around(evidence, leaning_spans(text, dim, high=high))
        return end_sentence(f"{head} You wrote \u201c{escape_md(shown)}\u201d")
    lean = "high" if high else "low"
    for item in answered:
        if item.reply is not None and item.reply[0] == score.label and item.reply[1].lean == lean:
            asked = quote(writer.asked(journey, item.exchange.question))
            verb = "you chose" if item.clicked else "you answered"
            return end_sentence(f"{head} Asked {asked}, {verb} {quote(item.exchange.answer)}")
    return head


def _evidence(
    writer: OfflineWriter, journey: Journey, answered: list[Answered], label: str, *, high: bool
) -> str:
    """The typed answer that leans furthest the given way on this dimension, if any."""
    dim = writer.dimension(journey, label)
    best, best_lean = "", 0
    for item in answered:
        reading = item.reading
        if item.clicked or not reading.typed_english or "irony" in reading.cues:
            continue
        ups, downs = signal_hits(
            masked(normal(item.exchange.answer), writer.bank.common.masks), dim
        )
        lean = (len(ups) - len(downs)) if high else (len(downs) - len(ups))
        if lean > best_lean:
            best, best_lean = item.exchange.answer, lean
    return best


def _suggestions(
    writer: OfflineWriter, journey: Journey, scores: list[DimensionScore], rng: random.Random
) -> list[str]:
    ranked = sorted(scores, key=lambda s: (-(s.score if s.score is not None else 5), s.label))
    picks: list[str] = []
    for score in ranked[::-1][:2]:
        dim = writer.dimension(journey, score.label)
        pool = dim.suggestions_high if score.direction == "high" else dim.suggestions_low
        picks.append(rng.choice(pool))
    top = writer.dimension(journey, ranked[0].label)
    picks.append(rng.choice(top.suggestions_high))
    return list(dict.fromkeys(picks))


def score_line(score: DimensionScore) -> str:
    """The score with every signal and reply behind it, so the rule can be checked."""
    parts = [
        f"your quick repl{'ies' if len(replies) > 1 else 'y'} "
        + " and ".join(f"\u201c{reply}\u201d" for reply in replies)
        + f" (toward {lean})"
        for lean, replies in (("high", score.high_replies), ("low", score.low_replies))
        if replies
    ]
    # A typed answer is the person's own words: say how it matched a reply, never that
    # the reply was picked.
    parts += [
        f"your answer \u201c{answer}\u201d, "
        + (
            f"which says what the quick reply \u201c{reply}\u201d says"
            if how == "says"
            else f"which starts like the quick reply \u201c{reply}\u201d"
        )
        + f" (toward {lean})"
        for lean, pairs in (("high", score.high_short), ("low", score.low_short))
        for answer, reply, how in pairs
    ]
    if score.high_hits or score.low_hits:
        parts.append(
            f"{_signals(score.high_hits)} toward high, {_signals(score.low_hits)} toward low"
        )
    if score.score is None:
        return f"- {score.label}: {NOT_ENOUGH} - no signal either way in your answers"
    if score.score == 5:
        parts.append("evenly balanced, so the middle of the scale")
    return f"- {score.label}: {score.score} - " + "; ".join(parts)


def _signals(hits: tuple[str, ...]) -> str:
    if not hits:
        return "no signals"
    shown = ", ".join(f"\u201c{hit}\u201d" for hit in hits)
    return f"{len(hits)} signal{'s' if len(hits) > 1 else ''} ({shown})"
