"""The offline model's composition: scenarios, reactive questions and scored reports from the bank."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

from server.generators import question as question_gen
from server.generators import report as report_gen
from server.generators.journey import Journey, StepKind

QUOTE_CHARS = 110
REACTION_KINDS = ("reason", "worry", "certainty", "doubt", "feeling")


@dataclass(frozen=True)
class BankQuestion:
    text: str
    replies: tuple[str, ...]


@dataclass(frozen=True)
class Dimension:
    label: str
    low: str
    high: str
    signals_high: tuple[str, ...]
    signals_low: tuple[str, ...]
    questions: tuple[BankQuestion, ...]
    strength: str
    blind_spot: str
    suggestions_low: tuple[str, ...]
    suggestions_high: tuple[str, ...]


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class CategoryBank:
    category: str
    scenarios: tuple[Scenario, ...]
    dimensions: dict[str, Dimension]


@dataclass(frozen=True)
class Style:
    id: str
    name: str
    text: str


@dataclass(frozen=True)
class Common:
    reactions: dict[str, tuple[str, ...]]
    markers: dict[str, tuple[str, ...]]
    styles: dict[str, Style]
    closing: tuple[str, ...]


@dataclass(frozen=True)
class Bank:
    categories: dict[str, CategoryBank]
    common: Common


def load_bank() -> Bank:
    """Read the bank's JSON files shipped in this package; done once at start-up."""
    folder = resources.files("server.generators").joinpath("bank")
    categories: dict[str, CategoryBank] = {}
    common: Common | None = None
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".json"):
            continue
        data = json.loads(entry.read_text(encoding="utf-8"))
        if entry.name == "common.json":
            common = _common(data)
        else:
            bank = _category(data)
            categories[bank.category] = bank
    if common is None:
        raise RuntimeError("the offline bank has no common.json")
    return Bank(categories=categories, common=common)


def _category(data: dict[str, Any]) -> CategoryBank:
    dims = {
        label: Dimension(
            label=label,
            low=d["low"],
            high=d["high"],
            signals_high=tuple(s.lower() for s in d["signals_high"]),
            signals_low=tuple(s.lower() for s in d["signals_low"]),
            questions=tuple(BankQuestion(q["text"], tuple(q["replies"])) for q in d["questions"]),
            strength=d["strength"],
            blind_spot=d["blind_spot"],
            suggestions_low=tuple(d["suggestions_low"]),
            suggestions_high=tuple(d["suggestions_high"]),
        )
        for label, d in data["dimensions"].items()
    }
    scenarios = tuple(Scenario(s["id"], s["title"], s["text"]) for s in data["scenarios"])
    return CategoryBank(category=data["category"], scenarios=scenarios, dimensions=dims)


def _common(data: dict[str, Any]) -> Common:
    return Common(
        reactions={k: tuple(v) for k, v in data["reactions"].items()},
        markers={k: tuple(m.lower() for m in v) for k, v in data["markers"].items()},
        styles={s["id"]: Style(s["id"], s["name"], s["text"]) for s in data["styles"]},
        closing=tuple(data["closing"]),
    )


@dataclass(frozen=True)
class DimensionScore:
    label: str
    score: int
    high_hits: tuple[str, ...]
    low_hits: tuple[str, ...]


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
            lead = "Put yourself at the moment of choice."
        else:
            lead = self._reaction(journey.exchanges[-1].answer, rng)
        return question_gen.Question(text=f"{lead} {chosen.text}", replies=chosen.replies)

    def scores(self, journey: Journey) -> list[DimensionScore]:
        """Per dimension: 10 * (high + 1) / (high + low + 2), so no evidence scores 5."""
        text = " ".join(exchange.answer for exchange in journey.exchanges).lower()
        result = []
        for label in journey.dimensions:
            dim = self._dimension(journey, label)
            high = tuple(s for s in dim.signals_high if _mentions(text, s))
            low = tuple(s for s in dim.signals_low if _mentions(text, s))
            score = round(10 * (len(high) + 1) / (len(high) + len(low) + 2))
            result.append(DimensionScore(label, max(0, min(10, score)), high, low))
        return result

    def report(self, journey: Journey) -> str:
        scores = self.scores(journey)
        ranked = sorted(scores, key=lambda s: (-s.score, s.label))
        answers = [exchange.answer for exchange in journey.exchanges]
        rng = random.Random(journey.seed * 7 + len(answers))
        style = self._style(answers)
        quotes = [f"\u201c{_escape_md(_excerpt(answer))}\u201d" for answer in answers]
        summary = self._summary(journey, quotes)
        strengths = [self._point(journey, s, s.high_hits, high=True) for s in ranked[:2]]
        blind = [self._point(journey, s, s.low_hits, high=False) for s in ranked[-2:][::-1]]
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

    def _summary(self, journey: Journey, quotes: list[str]) -> str:
        if not quotes:
            return f"You looked at a decision about {journey.category_title.lower()}."
        parts = [f"You started by saying {quotes[0]}."]
        if len(quotes) > 2:
            parts.append(f"Asked to look closer, you answered {quotes[len(quotes) // 2]}.")
        if len(quotes) > 1:
            parts.append(f"By the end you said {quotes[-1]}.")
        return " ".join(parts)

    def _point(
        self, journey: Journey, score: DimensionScore, hits: tuple[str, ...], *, high: bool
    ) -> str:
        dim = self._dimension(journey, score.label)
        sentence = dim.strength if high else dim.blind_spot
        evidence = _answer_with(journey, hits)
        if evidence:
            return f"**{dim.label}** ({score.score}/10): {sentence} You wrote \u201c{_escape_md(_excerpt(evidence))}\u201d."
        return f"**{dim.label}** ({score.score}/10): {sentence}"

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
        text = " ".join(answers).lower()
        counts = {
            kind: sum(_mentions(text, m) for m in self._bank.common.markers.get(kind, ()))
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
        common = self._bank.common
        lowered = answer.lower()
        for kind in REACTION_KINDS:
            for marker in common.markers.get(kind, ()):
                if _mentions(lowered, marker):
                    quote = _clause_around(answer, marker)
                    return rng.choice(common.reactions[kind]).replace("<quote>", quote)
        return rng.choice(common.reactions["plain"]).replace("<quote>", _excerpt(answer))

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
                ("A lot", "Somewhat", "Hardly at all"),
            ),
        ),
        strength=f"You bring {name} to your choices.",
        blind_spot=f"You may give {name} less room than it deserves.",
        suggestions_low=(f"Next time, ask yourself where {name} fits before you decide.",),
        suggestions_high=(f"Notice when {name} helps you, and when it narrows your view.",),
    )


def _mentions(text: str, signal: str) -> bool:
    if " " in signal or "'" in signal:
        return signal in text
    return re.search(rf"\b{re.escape(signal)}\b", text) is not None


def _excerpt(text: str, limit: int = QUOTE_CHARS) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[:limit].rsplit(" ", 1)[0]
    return cut + "\u2026"


def _clause_around(answer: str, marker: str) -> str:
    """The sentence holding the marker, trimmed to start at it when the sentence is long."""
    flat = " ".join(answer.split())
    sentences = re.split(r"(?<=[.!?])\s+", flat)
    for sentence in sentences:
        lowered = sentence.lower()
        at = lowered.find(marker)
        if at < 0:
            continue
        if len(sentence) > QUOTE_CHARS and at > 0:
            sentence = sentence[at:]
        return _excerpt(sentence.rstrip(".!?"))
    return _excerpt(flat)


def _answer_with(journey: Journey, hits: tuple[str, ...]) -> str:
    for exchange in journey.exchanges:
        lowered = exchange.answer.lower()
        if any(_mentions(lowered, hit) for hit in hits):
            return exchange.answer
    return ""


def _score_line(score: DimensionScore) -> str:
    def shown(hits: tuple[str, ...]) -> str:
        return ", ".join(f"\u201c{hit}\u201d" for hit in hits[:3])

    if not score.high_hits and not score.low_hits:
        why = "no clear signal in your answers, so the middle of the scale"
    else:
        why = f"{len(score.high_hits)} signal(s) toward high"
        if score.high_hits:
            why += f" ({shown(score.high_hits)})"
        why += f", {len(score.low_hits)} toward low"
        if score.low_hits:
            why += f" ({shown(score.low_hits)})"
    return f"- {score.label}: {score.score} - {why}"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|])")


def _escape_md(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", text)
