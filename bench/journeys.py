"""The journeys case: N people each doing a whole journey, and how many one process serves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.cases import app_settings, loadavg, upstream_args, usage
from bench.procs import Monitor, app, run_client, upstream
from bench.stats import between, dist, per

QUESTIONS = 5
THINK_S = (5.0, 15.0)
RAMP_S = 15.0  # arrivals spread over the first think-time span, not all in one instant
FIRST_TEXT_LIMIT_S = 1.0  # "people per process": first text p99 under this, nothing fell back


def journeys(n: int, work: Path) -> dict[str, Any]:
    """N people; every step (scenario, questions, report) streams 200 tokens at 50 tokens/s."""
    monitor = Monitor()
    label = f"journeys-{n}"
    data = work / f"data-{label}"
    try:
        with upstream(work, **upstream_args(quick=False)) as (url, upstream_pid):
            monitor.watch("upstream", upstream_pid)
            settings = app_settings(
                url,
                data,
                limits__max_concurrent_ai_requests=n + 10,
                journey__questions_per_session=QUESTIONS,
            )
            with app(work, settings) as (port, app_pid):
                monitor.watch("app", app_pid)
                spec = {
                    "mode": "journeys",
                    "port": port,
                    "n": n,
                    "questions": QUESTIONS,
                    "think_s": THINK_S,
                    "ramp_s": RAMP_S,
                    "timeout_s": 900,
                }
                run = run_client(spec, monitor, work, timeout_s=1200, label=label)
                peak = monitor.peak("app")
    finally:
        monitor.close()
    records = run.records
    steps = [step for rec in records for step in rec.get("steps", [])]
    first_text = between("opened", "first_text")
    by_kind = {
        "scenario": [s for s in steps if s["n"] == 0],
        "question": [s for s in steps if 1 <= s["n"] <= QUESTIONS],
        "report": [s for s in steps if s["n"] == QUESTIONS + 1],
    }
    cpu = usage(run.marks, "app")
    completed = sum(1 for r in records if r.get("ok"))
    fell_back = sum(1 for s in steps if s.get("fallback") is not None)
    all_first = dist(map(first_text, steps))
    return {
        "label": label,
        "kind": "journeys",
        "n": n,
        "questions": QUESTIONS,
        "think_s": THINK_S,
        "ramp_s": RAMP_S,
        "completed": completed,
        "steps": len(steps),
        "steps_done": sum(1 for s in steps if s.get("done") is not None),
        "fell_back": fell_back,
        "first_text_s": all_first,
        "first_text_by_kind_s": {k: dist(map(first_text, v)) for k, v in by_kind.items()},
        "stream_first_text_s": dist(map(between("req", "first_text"), steps)),
        "largest_gap_s": max((s.get("max_gap", 0.0) for s in steps), default=0.0),
        "journey_s": dist(map(between("post", "finished"), records)),
        "peak_rss_mb": peak,
        "app_cpu_s": cpu,
        "cpu_per_journey_s": per(cpu, completed),
        "serves": bool(
            all_first
            and completed == n
            and fell_back == 0
            and all_first["p99"] < FIRST_TEXT_LIMIT_S
        ),
        "errors": sorted({r["error"] for r in records if r.get("error")})[:5],
        "client": run.summary,
        "loadavg": loadavg(run.marks),
        "records": records,
    }
