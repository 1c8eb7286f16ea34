"""`python -m bench [--quick] [--cases direct,app,...,cluster]`: run, write JSON and RESULTS.md."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import cases, report
from bench.cluster import WORKERS, distributed
from bench.journeys import journeys
from bench.procs import raise_fd_limit

HERE = Path(__file__).resolve().parent
FAST_RATE = 200.0
CASES = ("direct", "app", "overload", "idle", "cache", "fast", "journeys", "cluster")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="smaller N: a smoke run of a few minutes"
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}"
    )
    parser.add_argument(
        "--results", type=Path, default=HERE / "results", help="where the JSON goes"
    )
    parser.add_argument(
        "--sizes", help="comma-separated N for the direct and app cases (default 100,500,1000)"
    )
    parser.add_argument("--journey-sizes", help="comma-separated N for the journeys case")
    parser.add_argument("--cluster-sizes", help="comma-separated N for the cluster case")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    args = parser.parse_args(argv)
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(chosen) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    plan = cases.QUICK if args.quick else cases.FULL
    plan_name = "quick" if args.quick else "full"
    if args.sizes:
        plan = dataclasses.replace(plan, sizes=tuple(int(n) for n in args.sizes.split(",")))
        plan_name += f", sizes {args.sizes}"
    if args.journey_sizes:
        sizes = tuple(int(n) for n in args.journey_sizes.split(","))
        plan = dataclasses.replace(plan, journey_sizes=sizes)
    if args.cluster_sizes:
        sizes = tuple(int(n) for n in args.cluster_sizes.split(","))
        plan = dataclasses.replace(plan, cluster_sizes=sizes)
    raise_fd_limit()
    args.results.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="crossroads-bench-"))
    run_id = time.strftime("%Y-%m-%dT%H:%M:%S")
    commit = git_commit()
    collected: dict[str, list[dict[str, Any]]] = {}
    failed = False

    def record(case: str, run: Callable[[], dict[str, Any]]) -> None:
        nonlocal failed
        started = time.monotonic()
        print(f"[bench] {case}: running", flush=True)
        try:
            result = run()
        except Exception:
            failed = True
            print(f"[bench] {case}: FAILED (logs in {work})\n{traceback.format_exc()}", flush=True)
            return
        result["elapsed_s"] = time.monotonic() - started
        records = result.pop("records", None)
        if records is not None:
            (args.results / "records").mkdir(exist_ok=True)
            (args.results / "records" / f"{result['label']}.json").write_text(json.dumps(records))
        collected.setdefault(case, []).append(result)
        document = {
            "case": case,
            "run_id": run_id,
            "plan": plan_name,
            "commit": commit,
            "runs": collected[case],
        }
        (args.results / f"{case}.json").write_text(json.dumps(document, indent=1))
        print(f"[bench] {case}: {headline(result)} ({result['elapsed_s']:.0f} s)", flush=True)

    began = time.monotonic()
    for n in plan.sizes:
        if "direct" in chosen:
            record("direct", lambda n=n: cases.direct(n, work))  # type: ignore[misc]
        if "app" in chosen:
            record("app", lambda n=n: cases.through_app(n, work, slots=n + 10, label=f"app-{n}"))  # type: ignore[misc]
    if "overload" in chosen:
        slots = plan.overload_slots
        record(
            "overload",
            lambda: cases.through_app(
                10 * slots, work, slots=slots, label="overload", kind="overload"
            ),
        )
    if "idle" in chosen:
        record("idle", lambda: cases.idle(plan.idle_viewers, plan.idle_hold_s, work))
    if "cache" in chosen:
        record("cache", lambda: cases.cache(plan.cache_sessions, work))
    for n in plan.sizes if "fast" in chosen else ():
        # A faster upstream (200 tokens at 200 tokens/s, as fast hosted models stream): the
        # relay's cost per chunk matters most here.
        record("fast", lambda n=n: cases.direct(n, work, rate=FAST_RATE, label=f"direct-fast-{n}"))  # type: ignore[misc]
        record(
            "fast",
            lambda n=n: cases.through_app(  # type: ignore[misc]
                n, work, slots=n + 10, label=f"app-fast-{n}", rate=FAST_RATE
            ),
        )
    for n in plan.journey_sizes if "journeys" in chosen else ():
        record("journeys", lambda n=n: journeys(n, work))  # type: ignore[misc]
    for n in plan.cluster_sizes if "cluster" in chosen else ():
        # One embedded worker, then WORKERS distributed ones behind nginx on Redis and
        # PostgreSQL: the same upstream, the same N at once (issue 12, section 4).
        record(
            "cluster",
            lambda n=n: cases.through_app(  # type: ignore[misc]
                n, work, slots=n + 10, label=f"embedded-1-{n}", kind="cluster"
            ),
        )
        record("cluster", lambda n=n: distributed(n, work, workers=WORKERS))  # type: ignore[misc]
    text = report.write(args.results, HERE / "RESULTS.md")
    print(
        f"[bench] done in {time.monotonic() - began:.0f} s; wrote {HERE / 'RESULTS.md'}\n",
        flush=True,
    )
    print(text.split("## Streams")[0], flush=True)
    if failed or args.keep:
        print(f"[bench] work directory kept: {work}", flush=True)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def git_commit() -> str | None:
    """The commit measured, with `+dirty` when server code differs from it."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "server", "run.py", "settings.toml"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if head and dirty else head or None


def headline(result: dict[str, Any]) -> str:
    if "streams" in result:
        s = result["streams"]
        ttft = (s.get("ttft_s") or {}).get("p99")
        total = (s.get("total_s") or {}).get("p50")
        return (
            f"{s['completed']}/{s['n']} complete, first text p99 "
            f"{'-' if ttft is None else f'{ttft * 1000:.0f} ms'}, total p50 "
            f"{'-' if total is None else f'{total:.2f} s'}, largest gap {s['largest_gap_s']:.2f} s, "
            f"peak RSS {result['server']['peak_rss_mb']:.0f} MB"
        )
    if result["kind"] == "idle":
        return f"{result['opened']}/{result['n']} open, {result['rss_per_viewer_kb']:.1f} KB per viewer"
    if result["kind"] == "journeys":
        ft = result.get("first_text_s") or {}
        return (
            f"{result['completed']}/{result['n']} journeys, {result['fell_back']} steps fell back, "
            f"first text p50/p99 {ft.get('p50', 0) * 1000:.0f}/{ft.get('p99', 0) * 1000:.0f} ms"
        )
    if result["kind"] == "cache":
        hit = result.get("hit_done_s") or {}
        p99 = hit.get("p99")
        return f"{result['hits_completed']} hits, done p99 {'-' if p99 is None else f'{p99 * 1000:.1f} ms'}"
    return "done"


if __name__ == "__main__":
    sys.exit(main())
