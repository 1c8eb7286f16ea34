"""The offline writer's bank: what it holds for each category, and how scenarios are picked."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from server.generators import question as question_gen
from server.generators.bank import LEANS, Bank, Reply, _reply
from server.generators.offline import OfflineWriter
from tests.offline_journey import (
    CATEGORIES,
    QUESTIONS,
    start,
)


def all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in (key, *all_strings(item))]
    if isinstance(value, list):
        return [s for item in value for s in all_strings(item)]
    return []


def bank_files() -> list[tuple[str, Any]]:
    folder = resources.files("server.generators").joinpath("bank")
    return [
        (entry.name, json.loads(entry.read_text(encoding="utf-8")))
        for entry in folder.iterdir()
        if entry.name.endswith(".json")
    ]


def test_bank_never_claims_to_be_an_ai() -> None:
    files = bank_files()
    assert len(files) >= 7
    for name, data in files:
        for text in all_strings(data):
            lowered = text.lower()
            assert "as an ai" not in lowered, name
            assert "language model" not in lowered, name


@pytest.mark.parametrize("category_id", sorted(CATEGORIES))
def test_bank_covers_the_category_and_its_dimensions(bank: Bank, category_id: str) -> None:
    category = bank.categories[category_id]
    assert set(category.dimensions) == set(CATEGORIES[category_id].dimensions)
    for dim in category.dimensions.values():
        assert dim.signals_high
        assert dim.signals_low
        assert len(dim.questions) >= QUESTIONS // len(category.dimensions) + 1
        for bank_question in dim.questions:
            assert 2 <= len(bank_question.replies) <= question_gen.MAX_REPLIES
            assert all(len(r.text) <= question_gen.MAX_REPLY_CHARS for r in bank_question.replies)


def test_every_quick_reply_in_every_bank_has_a_lean() -> None:
    count = 0
    for name, data in bank_files():
        if name == "common.json":
            continue
        for label, dim in data["dimensions"].items():
            leans = set()
            for bank_question in dim["questions"]:
                for reply in bank_question["replies"]:
                    assert isinstance(reply, dict), (name, label, reply)
                    assert set(reply) == {"text", "lean"}, (name, label, reply)
                    assert reply["text"].strip(), (name, label)
                    assert reply["lean"] in LEANS, (name, label, reply)
                    leans.add(reply["lean"])
                    count += 1
            # Quick replies alone can move every dimension either way.
            assert {"high", "low"} <= leans, (name, label)
    assert count > 300


def test_a_plain_string_reply_still_loads_as_neutral() -> None:
    assert _reply("Somewhat") == Reply("Somewhat", "neutral")
    assert _reply({"text": "All in", "lean": "high"}) == Reply("All in", "high")
    with pytest.raises(ValueError):
        _reply({"text": "All in", "lean": "sideways"})


@pytest.mark.parametrize("category_id", sorted(CATEGORIES))
def test_bank_has_eight_distinct_scenarios_of_120_to_250_words(
    bank: Bank, category_id: str
) -> None:
    scenarios = bank.categories[category_id].scenarios
    assert len(scenarios) >= 8
    assert len({s.id for s in scenarios}) == len(scenarios)
    assert len({s.text for s in scenarios}) == len(scenarios)
    for scenario in scenarios:
        assert 120 <= len(scenario.text.split()) <= 250, scenario.id


@pytest.mark.parametrize("category_id", sorted(CATEGORIES))
def test_different_seeds_pick_different_scenarios(
    bank: Bank, writer: OfflineWriter, category_id: str
) -> None:
    count = len(bank.categories[category_id].scenarios)
    assert writer.scenario(start(category_id, seed=1)) != writer.scenario(
        start(category_id, seed=2)
    )
    assert writer.scenario(start(category_id, seed=5)) == writer.scenario(
        start(category_id, seed=5)
    )
    seen = {writer.scenario(start(category_id, seed=seed)).id for seed in range(count)}
    assert len(seen) == count
