"""settings.toml against the code: every key's value and comment are the code's default and help."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from server import settings
from server.settings import Category, Settings

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_TOML = ROOT / "settings.toml"
BANK = ROOT / "server" / "generators" / "bank"

# Every table of keys with defaults, read from the code so that a new section is checked too.
SECTIONS: dict[str, type[BaseModel]] = {
    name: field.annotation
    for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
}
# The categories are data, not settings with defaults: the file holds their values, which the
# code cannot know. What the code fixes is which keys a category has and what each means, so the
# check is that every category validates, uses only those keys, and that the comment above the
# first one names each key.
DATA_TABLES = {"categories"}

# DESIGN.md section 9: the keys operators, tests and benchmarks rely on.
DESIGN_KEYS: dict[str, set[str]] = {
    "server": {"host", "port", "workers", "limit_concurrency", "graceful_shutdown_s"},
    "llm": {"base_url", "model", "max_tokens_scenario", "max_tokens_question", "max_tokens_report"},
    "limits": {
        "max_concurrent_ai_requests",
        "queue_timeout_s",
        "first_token_timeout_s",
        "chunk_timeout_s",
        "worker_time_limit_s",
        "worker_memory_limit_mb",
        "memory_soft_pct",
        "memory_hard_pct",
        "watchdog_interval_s",
        "high_risk_request_s",
        "high_risk_rss_mb",
        "max_body_bytes",
        "sessions_per_minute_per_client",
        "answers_per_minute_per_client",
    },
    "stream": {"heartbeat_s", "frame_ms", "abandon_grace_s"},
    "storage": {"data_dir", "cache_size_mb", "session_ttl_days"},
    "journey": {"questions_per_session", "answer_max_chars"},
    "offline": {"chars_per_s"},
    "scale": {"backend", "database_url", "redis_url", "lease_s"},
}
CATEGORY_KEYS = {"title", "blurb", "dimensions"}

HEADER = re.compile(r"^\[([a-z0-9_.-]+)\]\s*$")
KEY = re.compile(r"^([a-z_][a-z0-9_]*)\s*=")


def shipped_text() -> str:
    return SETTINGS_TOML.read_text(encoding="utf-8")


def comments(text: str) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """The comment lines directly above each key, by (table, key), and above each table header,
    each joined into one line (the file wraps them, the code does not)."""
    keys: dict[tuple[str, str], str] = {}
    headers: dict[str, str] = {}
    table = ""
    block: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#"):
            block.append(line.removeprefix("#").strip())
            continue
        if header := HEADER.match(line):
            table = header.group(1)
            headers[table] = " ".join(block)
        elif key := KEY.match(line):
            keys[(table, key.group(1))] = " ".join(block)
        block = []
    return keys, headers


def one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def differences(text: str) -> list[str]:
    """Where a settings file disagrees with the code, each naming its key."""
    values: dict[str, Any] = tomllib.loads(text)
    key_comments, _ = comments(text)
    found: list[str] = []
    for section, model in SECTIONS.items():
        table = values.get(section, {})
        defaults = model()
        for key, field in model.model_fields.items():
            name = f"{section}.{key}"
            if not one_line(field.description):
                found.append(f"{name} has no description in the code")
            if key not in table:
                found.append(f"{name} is in the code but not in the file")
                continue
            try:
                in_file = getattr(model.model_validate({key: table[key]}), key)
            except ValidationError:
                found.append(f"{name} = {table[key]!r} in the file is not a valid value")
                continue
            if in_file != getattr(defaults, key):
                found.append(f"{name} = {table[key]!r} in the file, {field.default!r} in the code")
            comment = key_comments.get((section, key), "")
            if comment != one_line(field.description):
                found.append(
                    f"{name}: the comment above it is {comment!r}, the code's description "
                    f"is {one_line(field.description)!r}"
                )
        found.extend(
            f"{section}.{key} is in the file but not in the code"
            for key in table
            if key not in model.model_fields
        )
    found.extend(
        f"[{section}] is in the file but not in the code"
        for section in values
        if section not in SECTIONS and section not in DATA_TABLES
    )
    return found


def test_file_agrees_with_the_code() -> None:
    assert differences(shipped_text()) == []


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        pytest.param(
            "\nport = 8000\n",
            "\nport = 8001\n",
            "server.port = 8001 in the file, 8000 in the code",
            id="value",
        ),
        pytest.param(
            "# TCP port to listen on.\n",
            "# TCP port to connect to.\n",
            "server.port: the comment above it is 'TCP port to connect to.'",
            id="comment",
        ),
        pytest.param(
            "# TCP port to listen on.\n",
            "",
            "server.port: the comment above it is ''",
            id="no-comment",
        ),
        pytest.param(
            "# Sampling temperature.\ntemperature = 0.8\n",
            "",
            "llm.temperature is in the code but not in the file",
            id="missing-key",
        ),
        pytest.param(
            "\nport = 8000\n",
            "\nport = 8000\n# Extra.\nbacklog = 2048\n",
            "server.backlog is in the file but not in the code",
            id="extra-key",
        ),
        pytest.param(
            "[offline]\n",
            "[cluster]\n# Nodes.\nnodes = 3\n\n[offline]\n",
            "[cluster] is in the file but not in the code",
            id="extra-table",
        ),
        pytest.param(
            'data_dir = "data"\n',
            'data_dir = "/var/lib/crossroads"\n',
            "storage.data_dir = '/var/lib/crossroads' in the file",
            id="path-value",
        ),
    ],
)
def test_checker_names_the_key_that_differs(old: str, new: str, expected: str) -> None:
    found = differences(replace_once(shipped_text(), old, new))
    assert any(line.startswith(expected) for line in found), found


def test_checker_reads_a_wrapped_comment_as_one_line() -> None:
    text = "[a]\n# one\n#   two\n\n# three\nx = 1\ny = 2\n"
    keys, _ = comments(text)
    assert keys == {("a", "x"): "three", ("a", "y"): ""}


def test_category_keys_are_documented_above_the_first_category() -> None:
    _, headers = comments(shipped_text())
    first = next(table for table in headers if table.startswith("categories."))
    comment = headers[first]
    assert comment, f"no comment above [{first}]"
    for key in Category.model_fields:
        assert key in comment, f"the comment above [{first}] does not mention {key!r}"


def test_every_category_uses_only_the_code_keys() -> None:
    categories = tomllib.loads(shipped_text())["categories"]
    seen: set[str] = set()
    for cid, table in categories.items():
        assert CATEGORY_KEYS <= set(table) <= set(Category.model_fields), cid
        seen |= set(table)
    # Optional keys (a category's support resources) are shown in at least one category.
    assert seen == set(Category.model_fields)


def test_design_keys_exist() -> None:
    tables = tomllib.loads(shipped_text())
    for section, keys in DESIGN_KEYS.items():
        assert keys <= set(SECTIONS[section].model_fields), section
        assert keys <= set(tables[section]), section
    assert set(Category.model_fields) >= CATEGORY_KEYS


def test_categories_are_complete() -> None:
    categories = settings.load(environ={}).categories
    assert len(categories) >= 6
    for cid, category in categories.items():
        assert category.title.strip(), cid
        assert category.blurb.strip(), cid
        assert len(category.dimensions) >= 2, cid
        assert len(set(category.dimensions)) == len(category.dimensions), cid


def test_every_category_has_an_offline_bank_with_its_dimensions() -> None:
    for cid, category in settings.load(environ={}).categories.items():
        bank_file = BANK / f"{cid}.json"
        assert bank_file.is_file(), f"no offline bank for category {cid!r}: {bank_file}"
        bank = json.loads(bank_file.read_text(encoding="utf-8"))
        assert list(bank["dimensions"]) == list(category.dimensions), cid
