"""The offline model's composition: scenarios, reactive questions and scored reports from the bank."""

from __future__ import annotations

import random
from dataclasses import dataclass

from server.generators import question as question_gen
from server.generators import report as report_gen
from server.generators.bank import (
    Bank,
    BankQuestion,
    CategoryBank,
    Dimension,
    Lean,
    Reply,
    Scenario,
    Style,
    normal,
)
from server.generators.journey import Exchange, Journey, StepKind
from server.generators.wording import (
    QUOTE_CHARS,
    clause_around,
    end_sentence,
    escape_md,
    excerpt,
    fill,
    flat,
    mentions,
    quote,
    signal_hits,
)

SHORT_ANSWER_WORDS = 5
NO_STRENGTH = (
    "Your answers did not lean clearly enough on any dimension to name a strength with "
    "confidence. Answers that give your reasons paint a sharper picture."
)
REACTION_KINDS = ("reason", "worry", "certainty", "doubt", "feeling")


# Used when the bank has no openings of its own.
@dataclass(frozen=True)
class DimensionScore:
    label: str
    score: int
    high_hits: tuple[str, ...]
    low_hits: tuple[str, ...]
    # Quick replies chosen as answers (their text as the person sent it), by lean.
    high_replies: tuple[str, ...] = ()
    low_replies: tuple[str, ...] = ()


class OfflineWriter:
    """Writes every step from the bank with transparent rules; no model involved."""

    def __init__(self, bank: Bank) -> None:
        self._bank = bank

    def write(self, journey: Journey, kind: StepKind) -> str:
        if kind == "scenario":
            return self.scenario(journey).text
        if kind == "question":
            return question_gen.render_text(self.question(journey))
        return self.report(journey)

    def scenario(self, journey: Journey) -> Scenario:
        scenarios = self._category(journey).scenarios
        return scenarios[journey.seed % len(scenarios)]

    def question(self, journey: Journey) -> question_gen.Question:
        number = len(journey.exchanges) + 1
        dim = self._dimension(journey, journey.dimensions[(number - 1) % len(journey.dimensions)])
        asked = {exchange.question for exchange in journey.exchanges}
        rng = random.Random(journey.seed * 31 + number)
        candidates = [q for q in dim.questions if not any(q.text in a for a in asked)]
        chosen = rng.choice(candidates or list(dim.questions))
        if not journey.exchanges:
            # The first question opens on the decision itself, in words that vary by seed;
            # some seeds ask straight away.
            lead = rng.choice((*self._bank.common.openings, ""))
        else:
            lead = self._reaction(journey.exchanges[-1].answer, rng)
        text = f"{lead} {chosen.text}" if lead else chosen.text
        return question_gen.Question(text=text, replies=tuple(r.text for r in chosen.replies))

    def scores(self, journey: Journey) -> list[DimensionScore]:
        """Per dimension: 10 * (high + 1) / (high + low + 2), so no evidence scores 5.

        High and low count the signals found in answers written in the person's own words
        and the quick replies chosen as answers. A quick reply counts once toward its lean
        (set in the bank) for its question's dimension; a neutral one counts for nothing.
        A signal counts once, not when negated ("I would never gamble"), and not when it
        sits inside a longer signal that matched ("not responsible" is not "responsible").
        """
        written: list[str] = []
        chosen: dict[str, list[tuple[Reply, str]]] = {label: [] for label in journey.dimensions}
        for exchange in journey.exchanges:
            found = self._quick_reply(journey, exchange)
            if found is None:
                written.append(exchange.answer)
            else:
                label, reply = found
                chosen[label].append((reply, exchange.answer))
        # Newlines keep one answer's negation from reaching into the next.
        text = normal("\n".join(written))
        result = []
        for label in journey.dimensions:
            high, low = signal_hits(text, self._dimension(journey, label))
            high_replies = tuple(" ".join(a.split()) for r, a in chosen[label] if r.lean == "high")
            low_replies = tuple(" ".join(a.split()) for r, a in chosen[label] if r.lean == "low")
            ups, downs = len(high) + len(high_replies), len(low) + len(low_replies)
            score = round(10 * (ups + 1) / (ups + downs + 2))
            result.append(
                DimensionScore(label, max(0, min(10, score)), high, low, high_replies, low_replies)
            )
        return result

    def _quick_reply(self, journey: Journey, exchange: Exchange) -> tuple[str, Reply] | None:
        """The dimension and bank reply when the answer is one of the quick replies offered
        for that question (ignoring case and spacing), found by the question's own text."""
        answer = flat(exchange.answer)
        asked = " ".join(exchange.question.split())
        if not answer:
            return None
        for label in journey.dimensions:
            for candidate in self._dimension(journey, label).questions:
                if asked == candidate.text or asked.endswith(" " + candidate.text):
                    return next(
                        ((label, r) for r in candidate.replies if flat(r.text) == answer), None
                    )
        return None

    def report(self, journey: Journey) -> str:
        scores = self.scores(journey)
        ranked = sorted(scores, key=lambda s: (-s.score, s.label))
        answers = [exchange.answer for exchange in journey.exchanges]
        rng = random.Random(journey.seed * 7 + len(answers))
        style = self._style(answers)
        summary = self._summary(journey)
        # With fewer than four dimensions the two lists must not name the same one.
        top = min(2, max(1, len(ranked) // 2))
        # A strength is claimed only where the answers leaned that way.
        strengths = [
            self._point(journey, s, s.high_hits, high=True) for s in ranked[:top] if s.score > 5
        ] or [NO_STRENGTH]
        blind = [self._point(journey, s, s.low_hits, high=False) for s in ranked[top:][-2:][::-1]]
        suggestions = self._suggestions(journey, ranked, rng)
        score_lines = [_score_line(s) for s in scores]
        closing = rng.choice(self._bank.common.closing)
        return "\n\n".join(
            [
                "## Summary",
                summary,
                "## Your decision style",
                f"**{style.name}.** {style.text}",
                "## Strengths",
                "\n".join(f"- {line}" for line in strengths),
                "## Blind spots",
                "\n".join(f"- {line}" for line in blind),
                "## Suggestions",
                "\n".join(f"- {line}" for line in suggestions),
                closing,
                f"## {report_gen.SCORES_HEADING}",
                "\n".join(score_lines),
            ]
        )

    def _summary(self, journey: Journey) -> str:
        exchanges = journey.exchanges
        if not exchanges:
            return f"You looked at a decision about {journey.category_title.lower()}."
        picks = [(exchanges[0], "You started by saying", "Asked {q}, you started with")]
        if len(exchanges) > 2:
            middle = exchanges[len(exchanges) // 2]
            picks.append((middle, "Asked to look closer, you answered", "Asked {q}, you answered"))
        if len(exchanges) > 1:
            picks.append((exchanges[-1], "By the end you said", "Finally, asked {q}, you said"))
        parts = []
        for exchange, plain, with_question in picks:
            asked = self._asked(journey, exchange.question)
            # A short answer (often a quick reply) means little without what it answered.
            if asked and len(exchange.answer.split()) <= SHORT_ANSWER_WORDS:
                lead = with_question.format(q=f"\u201c{escape_md(asked)}\u201d")
            else:
                lead = plain
            parts.append(end_sentence(f"{lead} {quote(exchange.answer)}"))
        return " ".join(parts)

    def _asked(self, journey: Journey, question: str) -> str:
        """The question itself, without the sentence that reacted to the answer before it."""
        flat = " ".join(question.split())
        for dim in self._category(journey).dimensions.values():
            for candidate in dim.questions:
                if flat.endswith(candidate.text):
                    return candidate.text
        quoting = "\u201c" in flat or '"' in flat
        return "" if quoting or len(flat) > QUOTE_CHARS else flat

    def _point(
        self, journey: Journey, score: DimensionScore, hits: tuple[str, ...], *, high: bool
    ) -> str:
        dim = self._dimension(journey, score.label)
        sentence = dim.strength if high else dim.blind_spot
        evidence = _answer_with(journey, hits)
        if evidence:
            return end_sentence(
                f"**{dim.label}** ({score.score}/10): {sentence} You wrote {quote(evidence)}"
            )
        chosen = self._chosen_reply(journey, score.label, "high" if high else "low")
        if chosen is not None:
            asked = quote(self._asked(journey, chosen.question))
            return end_sentence(
                f"**{dim.label}** ({score.score}/10): {sentence} "
                f"Asked {asked}, you chose {quote(chosen.answer)}"
            )
        return f"**{dim.label}** ({score.score}/10): {sentence}"

    def _chosen_reply(self, journey: Journey, label: str, lean: Lean) -> Exchange | None:
        """The first exchange answered with a quick reply leaning `lean` on this dimension."""
        for exchange in journey.exchanges:
            found = self._quick_reply(journey, exchange)
            if found is not None and found[0] == label and found[1].lean == lean:
                return exchange
        return None

    def _suggestions(
        self, journey: Journey, ranked: list[DimensionScore], rng: random.Random
    ) -> list[str]:
        picks: list[str] = []
        for score in ranked[::-1][:2]:
            dim = self._dimension(journey, score.label)
            pool = dim.suggestions_low if score.score < 6 else dim.suggestions_high
            picks.append(rng.choice(pool))
        top = self._dimension(journey, ranked[0].label)
        picks.append(rng.choice(top.suggestions_high))
        return list(dict.fromkeys(picks))

    def _style(self, answers: list[str]) -> Style:
        styles = self._bank.common.styles
        text = normal("\n".join(answers))
        counts = {
            kind: sum(mentions(text, m) for m in self._bank.common.markers.get(kind, ()))
            for kind in REACTION_KINDS
        }
        words = len(text.split()) / max(1, len(answers))
        if counts["worry"] >= 2 and counts["worry"] >= counts["certainty"]:
            chosen = "cautious"
        elif counts["certainty"] >= 2 and counts["certainty"] > counts["doubt"]:
            chosen = "decisive"
        elif counts["doubt"] >= 2:
            chosen = "exploratory"
        elif words >= 25 or counts["reason"] >= 2:
            chosen = "deliberate"
        else:
            chosen = "intuitive"
        return styles.get(chosen) or next(iter(styles.values()))

    def _reaction(self, answer: str, rng: random.Random) -> str:
        """One sentence that quotes the answer, picked by the first cue found in it."""
        common = self._bank.common
        lowered = normal(answer)
        for kind in REACTION_KINDS:
            for marker in common.markers.get(kind, ()):
                if mentions(lowered, marker):
                    template = rng.choice(common.reactions[kind])
                    return fill(template, clause_around(answer, marker))
        return fill(rng.choice(common.reactions["plain"]), excerpt(answer))

    def _category(self, journey: Journey) -> CategoryBank:
        bank = self._bank.categories.get(journey.category_id)
        if bank is not None:
            return bank
        # A category configured without a bank of its own borrows stories by seed.
        banks = sorted(self._bank.categories.values(), key=lambda b: b.category)
        return banks[journey.seed % len(banks)]

    def _dimension(self, journey: Journey, label: str) -> Dimension:
        dim = self._category(journey).dimensions.get(label)
        return dim if dim is not None else _generic_dimension(label)


def _generic_dimension(label: str) -> Dimension:
    name = label.lower()
    return Dimension(
        label=label,
        low=f"{label} plays a small part in how you decide.",
        high=f"{label} plays a large part in how you decide.",
        signals_high=(),
        signals_low=(),
        questions=(
            BankQuestion(
                f"How much does {name} weigh in this decision for you, and why?",
                (Reply("A lot", "high"), Reply("Somewhat"), Reply("Hardly at all", "low")),
            ),
        ),
        strength=f"You bring {name} to your choices.",
        blind_spot=f"You may give {name} less room than it deserves.",
        suggestions_low=(f"Next time, ask yourself where {name} fits before you decide.",),
        suggestions_high=(f"Notice when {name} helps you, and when it narrows your view.",),
    )


def _answer_with(journey: Journey, hits: tuple[str, ...]) -> str:
    for exchange in journey.exchanges:
        answer = normal(exchange.answer)
        if any(mentions(answer, hit) for hit in hits):
            return exchange.answer
    return ""


def _score_line(score: DimensionScore) -> str:
    """The score with every signal and quick reply behind it, so the rule can be checked."""
    parts = [
        f"your quick repl{'ies' if len(replies) > 1 else 'y'} "
        + " and ".join(f"\u201c{reply}\u201d" for reply in replies)
        + f" (toward {lean})"
        for lean, replies in (("high", score.high_replies), ("low", score.low_replies))
        if replies
    ]
    if score.high_hits or score.low_hits:
        parts.append(
            f"{_signals(score.high_hits)} toward high, {_signals(score.low_hits)} toward low"
        )
    if not parts:
        return f"- {score.label}: {score.score} - no clear signal in your answers, so the middle of the scale"
    return f"- {score.label}: {score.score} - " + "; ".join(parts)


def _signals(hits: tuple[str, ...]) -> str:
    if not hits:
        return "no signals"
    shown = ", ".join(f"\u201c{hit}\u201d" for hit in hits)
    return f"{len(hits)} signal{'s' if len(hits) > 1 else ''} ({shown})"
