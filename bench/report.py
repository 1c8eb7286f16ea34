"""bench/RESULTS.md: the figures of the latest run of each case, and the issue's targets."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.sections import (
    cache_section,
    cluster_section,
    fast_section,
    idle_section,
    journeys_section,
    overload_section,
    streams_table,
)
from bench.targets import targets

NOTES_START, NOTES_END = "<!-- notes -->", "<!-- /notes -->"
DEFAULT_NOTES = "(Findings from profiling go here; `python -m bench` keeps this section.)"


def load(results_dir: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        found[data["case"]] = data
    return found


def existing_notes(path: Path) -> str:
    if not path.exists():
        return DEFAULT_NOTES
    text = path.read_text()
    if NOTES_START in text and NOTES_END in text:
        return text.split(NOTES_START, 1)[1].split(NOTES_END, 1)[0].strip()
    return DEFAULT_NOTES


def write(results_dir: Path, path: Path) -> str:
    found = load(results_dir)
    streams = [r for case in ("direct", "app") for r in (found.get(case) or {}).get("runs", [])]
    streams.sort(key=lambda r: (r["n"], r["kind"] != "direct"))
    over = (found.get("overload") or {}).get("runs", [])
    runs_info = ", ".join(
        f"{case} {data['run_id']} ({data['plan']}"
        + (f", commit {data['commit']})" if data.get("commit") else ")")
        for case, data in sorted(found.items())
    )
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench`; `--quick` for a smoke run, `--cases a,b` for some). "
        "All on 127.0.0.1 on this 2-core machine: the fake upstream, the app (`run.py`) and the "
        "load client are three processes; the client speaks HTTP/1.1 over raw asyncio sockets. "
        "The upstream streams 200 tokens at 50 tokens/s after 0.3 s unless a case says otherwise. "
        "Times to first byte and first text count from the stream request; through the app the "
        "generation already started at `POST /sessions`, so POST→text is shown too. "
        "Server CPU and the client's CPU count from the moment all requests go out to the last `done`; "
        "peak RSS is sampled every 0.2 s. `load 1 min` is `os.getloadavg()` at the start and end of the "
        "measured window (other work on the machine shows up there).",
        "",
        f"Runs: {runs_info}. Load average when this file was written: "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}.",
        "",
        "## Targets",
        "",
        *targets(found),
        "",
        "## Streams: direct and through the app",
        "",
        *streams_table(streams + over),
        *overload_section(found),
        *idle_section(found),
        *cache_section(found),
        *fast_section(found),
        *journeys_section(found),
        *cluster_section(found),
        "",
        "## Where the time goes",
        "",
        NOTES_START,
        existing_notes(path),
        NOTES_END,
        "",
    ]
    text = "\n".join(lines)
    path.write_text(text)
    return text
