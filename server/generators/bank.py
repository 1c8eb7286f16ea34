"""The offline writer's bank: its data types, and the loader of the JSON files shipped with it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, cast

DEFAULT_OPENING = "Put yourself at the moment of choice."

Lean = Literal["high", "low", "neutral"]
LEANS: tuple[Lean, ...] = ("high", "low", "neutral")


@dataclass(frozen=True)
class Reply:
    """A quick reply and the way choosing it leans on its question's dimension."""

    text: str
    lean: Lean = "neutral"


@dataclass(frozen=True)
class BankQuestion:
    text: str
    replies: tuple[Reply, ...]


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
    """A story, and what its questions can name: its people, what is at stake, and where."""

    id: str
    title: str
    text: str
    people: tuple[str, ...] = ()
    stakes: str = ""
    place: str = ""  # with its preposition: "in Rotterdam", "at the fridge"


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
    openings: tuple[str, ...]
    markers: dict[str, tuple[str, ...]]
    styles: dict[str, Style]
    closing: tuple[str, ...]
    # Openings and bridges that name the scenario's <people>, <stakes> or <place>.
    scene_openings: tuple[str, ...] = ()
    bridges: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Phrases that look like a signal and are not one ("kind of", "to be fair").
    masks: tuple[str, ...] = ()
    # Words that mark a language: English, and the others an answer may be written in.
    english: frozenset[str] = frozenset()
    languages: dict[str, frozenset[str]] = field(default_factory=dict)
    # Bare answers: a yes or a no said in one or two words.
    yes: tuple[str, ...] = ()
    no: tuple[str, ...] = ()
    # Words that say little on their own, left out when an answer is compared with a reply.
    stopwords: frozenset[str] = frozenset()
    # What the report says when it cannot name a style, and when the answers were brief.
    style_notes: dict[str, str] = field(default_factory=dict)


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
            signals_high=tuple(normal(s) for s in d["signals_high"]),
            signals_low=tuple(normal(s) for s in d["signals_low"]),
            questions=tuple(
                BankQuestion(q["text"], tuple(_reply(r) for r in q["replies"]))
                for q in d["questions"]
            ),
            strength=d["strength"],
            blind_spot=d["blind_spot"],
            suggestions_low=tuple(d["suggestions_low"]),
            suggestions_high=tuple(d["suggestions_high"]),
        )
        for label, d in data["dimensions"].items()
    }
    scenarios = tuple(
        Scenario(
            s["id"],
            s["title"],
            s["text"],
            people=tuple(s.get("people", ())),
            stakes=s.get("stakes", ""),
            place=s.get("place", ""),
        )
        for s in data["scenarios"]
    )
    return CategoryBank(category=data["category"], scenarios=scenarios, dimensions=dims)


def _reply(value: str | dict[str, Any]) -> Reply:
    """A reply is {"text", "lean"}; a plain string (an older bank) leans nowhere."""
    if isinstance(value, str):
        return Reply(value)
    lean = value.get("lean", "neutral")
    if lean not in LEANS:
        raise ValueError(f"quick reply {value['text']!r} has an unknown lean {lean!r}")
    return Reply(value["text"], cast(Lean, lean))


def _common(data: dict[str, Any]) -> Common:
    return Common(
        reactions={k: tuple(v) for k, v in data["reactions"].items()},
        openings=tuple(data.get("openings", (DEFAULT_OPENING,))),
        markers={k: tuple(normal(m) for m in v) for k, v in data["markers"].items()},
        styles={s["id"]: Style(s["id"], s["name"], s["text"]) for s in data["styles"]},
        closing=tuple(data["closing"]),
        scene_openings=tuple(data.get("scene_openings", ())),
        bridges={k: tuple(v) for k, v in data.get("bridges", {}).items()},
        masks=tuple(normal(m) for m in data.get("masks", ())),
        english=frozenset(normal(w) for w in data.get("english", ())),
        languages={
            k: frozenset(normal(w) for w in v) for k, v in data.get("languages", {}).items()
        },
        yes=tuple(normal(w) for w in data.get("yes", ())),
        no=tuple(normal(w) for w in data.get("no", ())),
        stopwords=frozenset(normal(w) for w in data.get("stopwords", ())),
        style_notes=dict(data.get("style_notes", {})),
    )


_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})


def normal(text: str) -> str:
    """Lower case with straight apostrophes, one character for one, so indexes still match
    the original text (typed answers often carry \u2019, the bank is written with ')."""
    return "".join(
        low if len(low := char.lower()) == 1 else char for char in text.translate(_APOSTROPHES)
    )
