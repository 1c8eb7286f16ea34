"""The failure reasons: one vocabulary, told to the person and named in the operator guide."""

from __future__ import annotations

import re
from pathlib import Path

from server.reasons import CAUSES, REASONS
from server.steps import fallback_note

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_reason_has_a_cause_the_person_reads() -> None:
    assert set(CAUSES) == set(REASONS)
    for reason in REASONS:
        note = fallback_note("question", reason, "offline")
        assert note.startswith(CAUSES[reason])


def test_the_operator_guide_names_every_reason() -> None:
    """An operator reading `reason` in a log line finds it in the README's table."""
    rows = [
        line
        for line in README.read_text(encoding="utf-8").splitlines()
        if line.startswith("|") and "Request terminated to prevent worker timeout" in line
    ]
    assert rows, "README.md has no operator table row for the termination log line"
    named = set(re.findall(r"`([a-z_]+)`", " ".join(rows)))
    missing = [reason for reason in REASONS if reason not in named]
    assert not missing, f"README.md's operator guide does not name: {missing}"
