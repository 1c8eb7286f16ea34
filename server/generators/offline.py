"""The offline model's composition: scenarios, reactive questions and scored reports from the bank."""

from __future__ import annotations

import random
import re

from server.generators import offline_report
from server.generators import question as question_gen
from server.generators.bank import (
    Bank,
    BankQuestion,
    CategoryBank,
    Dimension,
    Reply,
    Scenario,
    normal,
)
from server.generators.journey import Exchange, Journey, StepKind
from server.generators.reading import Reading, paraphrased, read
from server.generators.scoring import Answered, DimensionScore, score
from server.generators.wording import clause_around, excerpt, fill, flat, mentions

# The order in which a reaction looks for a cue: tiredness and frustration are heard
# before anything else, and doubt before the words that sound sure.
REACTION_KINDS = ("weary", "exasperation", "doubt", "worry", "certainty", "reason", "feeling")
# A doubtful answer this short is not quoted back ("idk" needs no quotation marks).
SHORT_DOUBT_WORDS = 4
# Capitalised words that are not people, when names are picked from a model's scenario.
_NOT_NAMES = frozenset(
    [
        "I",
        "You",
        "Your",
        "The",
        "A",
        "An",
        "He",
        "She",
        "They",
        "We",
        "It",
        "This",
        "That",
        "There",
        "Then",
        "When",
        "If",
        "But",
        "And",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
        "Christmas",
        "Easter",
        "Dr",
        "Mr",
        "Mrs",
        "Ms",
    ]
)


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
        scene = self._scene(journey)
        if not journey.exchanges:
            # The first question opens on the decision itself, in words that vary by seed
            # and name the scenario where the bank knows it; some seeds ask straight away.
            common = self._bank.common
            scene_openings = [_fill_scene(t, scene, number) for t in common.scene_openings]
            usable = [t for t in scene_openings if t and not _echoes(t, chosen.text)]
            openings = [t for t in common.openings if not _echoes(t, chosen.text)]
            lead = rng.choice((*usable, *usable, *openings, ""))
        else:
            lead = self._reaction(journey, journey.exchanges[-1], rng)
            bridge = self._bridge(scene, number, rng, before=chosen.text)
            lead = f"{lead} {bridge}" if bridge else lead
        text = f"{lead} {chosen.text}" if lead else chosen.text
        return question_gen.Question(text=text, replies=tuple(r.text for r in chosen.replies))

    def answered(self, journey: Journey) -> list[Answered]:
        """Every exchange as read, with the quick reply it was or stands for."""
        result = []
        for exchange in journey.exchanges:
            reading = read(exchange.answer, self._bank.common)
            clicked = self._quick_reply(journey, exchange)
            if clicked is not None:
                result.append(Answered(exchange, reading, clicked, clicked=True))
            elif reading.kind == "bare":
                result.append(Answered(exchange, reading, self._yes_no_reply(journey, exchange)))
            elif reading.kind == "words":
                echoed = self._echoed_reply(journey, exchange)
                if echoed is not None:
                    result.append(Answered(exchange, reading, echoed))
                else:
                    loose = self._paraphrased_reply(journey, exchange)
                    result.append(Answered(exchange, reading, loose, loose=loose is not None))
            else:
                result.append(Answered(exchange, reading))
        return result

    def scores(self, journey: Journey) -> list[DimensionScore]:
        dims = [self._dimension(journey, label) for label in journey.dimensions]
        return score(dims, self.answered(journey), self._bank.common)

    def report(self, journey: Journey) -> str:
        return offline_report.compose(self, journey)

    # What the report composition reads from the bank.

    @property
    def bank(self) -> Bank:
        return self._bank

    def dimension(self, journey: Journey, label: str) -> Dimension:
        return self._dimension(journey, label)

    def asked(self, journey: Journey, question: str) -> str:
        """The question itself, without the sentences that reacted to the answer before it."""
        flat_question = " ".join(question.split())
        bank_question = self._bank_question(journey, flat_question)
        if bank_question is not None:
            return bank_question.text
        quoting = "\u201c" in flat_question or '"' in flat_question
        return "" if quoting or len(flat_question) > 110 else flat_question

    # Reading the exchanges.

    def _bank_question(self, journey: Journey, asked: str) -> BankQuestion | None:
        for label in journey.dimensions:
            for candidate in self._dimension(journey, label).questions:
                if asked == candidate.text or asked.endswith(" " + candidate.text):
                    return candidate
        for dim in self._category(journey).dimensions.values():
            for candidate in dim.questions:
                if asked.endswith(candidate.text):
                    return candidate
        return None

    def _label_of(self, journey: Journey, question: BankQuestion) -> str | None:
        for label in journey.dimensions:
            if question in self._dimension(journey, label).questions:
                return label
        return None

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

    def _echoed_reply(self, journey: Journey, exchange: Exchange) -> tuple[str, Reply] | None:
        """The reply an answer starts with ("No, that's my red line. I'd never…"), or the
        one reply a one-word answer names ("Needs" for "What each person needs")."""
        question = self._bank_question(journey, " ".join(exchange.question.split()))
        label = self._label_of(journey, question) if question is not None else None
        if question is None or label is None:
            return None
        answer = flat(exchange.answer)
        for reply in question.replies:
            said = flat(reply.text)
            if answer.startswith(said) and not answer[len(said) : len(said) + 1].isalnum():
                return label, reply
        words = re.findall(r"[^\W\d_]+", answer)
        if len(words) == 1 and len(words[0]) > 3:
            naming = [r for r in question.replies if words[0] in re.findall(r"\w+", flat(r.text))]
            if len(naming) == 1:
                return label, naming[0]
        return None

    def _paraphrased_reply(self, journey: Journey, exchange: Exchange) -> tuple[str, Reply] | None:
        """The reply of the question an answer says in other words, if only one fits."""
        question = self._bank_question(journey, " ".join(exchange.question.split()))
        label = self._label_of(journey, question) if question is not None else None
        if question is None or label is None:
            return None
        reply = paraphrased(exchange.answer, question.replies, self._bank.common)
        return (label, reply) if reply is not None else None

    def _yes_no_reply(self, journey: Journey, exchange: Exchange) -> tuple[str, Reply] | None:
        """A bare yes or no read as the one reply of its question that starts with it
        ("no" to "Is there a middle option?" is "No, it really is either-or")."""
        reading = read(exchange.answer, self._bank.common)
        asked = " ".join(exchange.question.split())
        question = self._bank_question(journey, asked)
        label = self._label_of(journey, question) if question is not None else None
        if question is None or label is None:
            return None
        starting = [r for r in question.replies if re.match(rf"{reading.yes_no}\b", normal(r.text))]
        return (label, starting[0]) if len(starting) == 1 else None

    # Writing the questions.

    def _reaction(self, journey: Journey, exchange: Exchange, rng: random.Random) -> str:
        """One sentence that hears the last answer: a clicked reply is named as a choice,
        an answer without words or a bare yes/no is not quoted, another language is said
        to be one, and typed words are quoted by the first cue found in them."""
        common = self._bank.common
        asked = [e.question for e in journey.exchanges]

        def pick(kind: str) -> str:
            # Not a way of hearing the answer that an earlier question already used.
            templates = common.reactions[kind]
            fresh = [t for t in templates if not any(_opening(t) in q for q in asked)]
            return rng.choice(fresh or templates)

        if self._quick_reply(journey, exchange) is not None:
            return fill(pick("quick"), excerpt(exchange.answer))
        reading = read(exchange.answer, common)
        if reading.kind == "wordless":
            return pick("emoji")
        if reading.kind == "bare":
            return pick("bare")
        if reading.kind == "foreign":
            template = pick("language").replace("<language>", reading.language)
            return fill(template, excerpt(exchange.answer))
        kind = _reaction_kind(reading)
        if kind == "doubt" and reading.words <= SHORT_DOUBT_WORDS:
            return pick("doubt_short")
        if kind == "plain":
            return fill(pick("plain"), excerpt(exchange.answer))
        lowered = normal(exchange.answer)
        markers = (*common.markers.get(kind, ()), *common.markers.get("irony", ()))
        marker = next((m for m in markers if mentions(lowered, m)), "")
        quoted = clause_around(exchange.answer, marker) if marker else excerpt(exchange.answer)
        return fill(pick(kind), quoted)

    def _bridge(self, scene: Scenario | None, number: int, rng: random.Random, before: str) -> str:
        """A sentence that brings the scenario's people, stakes or place back in, never one
        that opens like the question it leads to ("Picture yourself…" twice)."""
        if scene is None:
            return ""
        bridges = self._bank.common.bridges
        kinds = [k for k in ("people", "stakes", "place") if _has(scene, k) and bridges.get(k)]
        if not kinds:
            return ""
        kind = kinds[number % len(kinds)]
        opening = " ".join(before.split()[:2])
        fitting = [
            t for t in bridges[kind] if not t.startswith(opening) and not _echoes(t, before)
        ] or list(bridges[kind])
        return _fill_scene(rng.choice(fitting), scene, number)

    def _scene(self, journey: Journey) -> Scenario | None:
        """What the scenario is about: the bank's data for a bank story, the names in a
        story the model wrote, nothing when there is no story to go on."""
        bank_scene = self.scenario(journey)
        if not journey.scenario.strip() or journey.scenario.strip() == bank_scene.text.strip():
            return bank_scene
        names = _names_in(journey.scenario)
        return Scenario("written", "", journey.scenario, people=names) if names else None

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


def _reaction_kind(reading: Reading) -> str:
    if "irony" in reading.cues:
        return "exasperation"
    return next((kind for kind in REACTION_KINDS if kind in reading.cues), "plain")


def _echoes(lead: str, question: str) -> bool:
    """Whether a lead's first word comes back in the question it opens: "Picture yourself in
    the row house. … the worst outcome you can picture" reads as a slip."""
    verb = lead.split(maxsplit=1)[0].lower() if lead.strip() else ""
    return bool(verb) and re.search(rf"\b{re.escape(verb)}\b", question.lower()) is not None


def _has(scene: Scenario, kind: str) -> bool:
    return bool(scene.people if kind == "people" else getattr(scene, kind))


def _fill_scene(template: str, scene: Scenario | None, number: int) -> str:
    """The template with the scenario's people (two at a time, turning with the question
    number), stakes and place; "" when it needs something the scenario lacks."""
    if scene is None:
        return ""
    people = scene.people
    named = ""
    if people:
        first = people[number % len(people)]
        second = people[(number + 1) % len(people)]
        named = first if second == first else f"{first} and {second}"
    for slot, value in (("<people>", named), ("<stakes>", scene.stakes), ("<place>", scene.place)):
        if slot in template:
            if not value:
                return ""
            template = template.replace(slot, value)
    return template


_PLACE_WORDS = frozenset({"in", "to", "at", "from", "near", "into", "towards", "outside"})


def _names_in(text: str) -> tuple[str, ...]:
    """Up to three names in a story: capitalised words that never start a sentence and
    follow no word of place, most mentioned first."""
    counts: dict[str, int] = {}
    for found in re.finditer(r"(?<![.!?\n]\s)(?<!^)\b([A-Z][a-z]{2,})\b", text):
        word = found.group(1)
        before = text[: found.start()].rstrip()
        if word in _NOT_NAMES or not before or before[-1] in '.!?\u201c"':
            continue
        # "to Lisbon", "in Leeds": a place, not a person to keep in mind.
        if before.split()[-1].lower() in _PLACE_WORDS:
            continue
        counts[word] = counts.get(word, 0) + 1
    return tuple(sorted(counts, key=lambda w: -counts[w])[:3])


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


def _opening(template: str) -> str:
    """What a reaction says before its quote (or all of it): how to know it in a question."""
    return template.split("<", 1)[0].strip()
