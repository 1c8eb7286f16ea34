"""The issue's targets in RESULTS.md: each one measured, and whether it was met."""

from __future__ import annotations

from typing import Any

from bench.cases import HEARTBEAT_S
from bench.cells import Run, load_cell, ms, num


def verdict(ok: bool | None) -> str:
    return "not run" if ok is None else ("**met**" if ok else "**missed**")


def pair(
    direct: dict[str, Any] | None, app: dict[str, Any] | None, n: int
) -> tuple[Run | None, Run | None]:
    """The direct and app runs for N, only when measured in the same invocation."""
    if not direct or not app or direct["run_id"] != app["run_id"]:
        return None, None
    d = next((r for r in direct["runs"] if r["n"] == n), None)
    a = next((r for r in app["runs"] if r["n"] == n), None)
    return d, a


def targets(found: dict[str, dict[str, Any]]) -> list[str]:
    """Issue 11's targets (the relay's CPU per chunk, and what it buys at N = 100, 500, 1,000)."""
    rows: list[tuple[str, str, bool | None]] = []
    direct, app = found.get("direct"), found.get("app")
    gap_limit = HEARTBEAT_S + 1
    for n in (500, 1000):
        d, a = pair(direct, app, n)
        if a is None or d is None:
            rows.append((f"N = {n} through the app (with direct in the same run)", "not run", None))
            continue
        s, ds = a["streams"], d["streams"]
        per_chunk = a["server"]["cpu_per_chunk_s"]
        rows.append(
            (
                f"N = {n:,}: app CPU per relayed upstream chunk ≤ 60 µs (aim 40)",
                f"{num(per_chunk * 1e6 if per_chunk else None, '.0f')} µs (load {load_cell(a)})",
                per_chunk is not None and per_chunk <= 60e-6,
            )
        )
        rows.append(
            (
                f"N = {n:,}: 100 % complete, nothing fell back, no silent gap > {gap_limit:g} s",
                f"{s['completed']}/{s['n']}, {s['fallbacks']} fell back, largest gap {s['largest_gap_s']:.2f} s",
                s["completed"] == s["n"]
                and s["fallbacks"] == 0
                and s["largest_gap_s"] <= gap_limit,
            )
        )
        t_ratio = s["ttft_s"]["p99"] / ds["ttft_s"]["p99"]
        p_ratio = s["post_to_text_s"]["p99"] / ds["ttft_s"]["p99"]
        total_ratio = s["total_s"]["p50"] / ds["total_s"]["p50"]
        informative = n != 500
        rows.append(
            (
                f"N = {n:,}: first text p99 ≤ 2 x direct's"
                + (" (reported)" if informative else ""),
                f"{ms(s['ttft_s']['p99'])} ms vs {ms(ds['ttft_s']['p99'])} ms = {t_ratio:.2f}x "
                f"(from POST /sessions: {ms(s['post_to_text_s']['p99'])} ms = {p_ratio:.2f}x)",
                None if informative else t_ratio <= 2.0,
            )
        )
        rows.append(
            (
                f"N = {n:,}: total time p50 ≤ 1.3 x direct's"
                + (" (reported)" if informative else ""),
                f"{s['total_s']['p50']:.2f} s vs {ds['total_s']['p50']:.2f} s = {total_ratio:.2f}x",
                None if informative else total_ratio <= 1.3,
            )
        )
        if n == 1000:
            rows.append(
                (
                    "N = 1,000: peak RSS ≤ 300 MB",
                    f"{a['server']['peak_rss_mb']:.0f} MB",
                    a["server"]["peak_rss_mb"] <= 300,
                )
            )
            rows.append(
                (
                    "N = 1,000: CPU seconds in the measured window",
                    f"app {num(a['server']['cpu_s'])} s, fake upstream {num(a['upstream_usage']['cpu_s'])} s, "
                    f"client {num(a['client'].get('cpu_s'))} s (direct: upstream {num(d['server']['cpu_s'])} s, "
                    f"client {num(d['client'].get('cpu_s'))} s)",
                    None,
                )
            )
    d, a = pair(direct, app, 100)
    if d and a:
        delta = a["streams"]["ttft_s"]["p50"] - d["streams"]["ttft_s"]["p50"]
        post_delta = a["streams"]["post_to_text_s"]["p50"] - d["streams"]["ttft_s"]["p50"]
        rows.append(
            (
                "N = 100: first text p50, app - direct ≤ +30 ms",
                f"{ms(delta, 1)} ms (from POST /sessions: {ms(post_delta, 1)} ms; load {load_cell(a)})",
                delta <= 0.030,
            )
        )
    else:
        rows.append(("N = 100: first text p50, app - direct ≤ +30 ms", "not run", None))
    idle = (found.get("idle") or {}).get("runs", [None])[0]
    if idle:
        rows.append(
            (
                "Idle viewer: ≤ 50 KB RSS each",
                f"{idle['rss_per_viewer_kb']:.1f} KB per open stream "
                f"({idle['rss_per_session_and_viewer_kb']:.1f} KB with its session and waiting generation), "
                f"{idle['n']} viewers",
                idle["rss_per_viewer_kb"] <= 50,
            )
        )
    else:
        rows.append(("Idle viewer: ≤ 50 KB RSS each", "not run", None))
    over = (found.get("overload") or {}).get("runs", [None])[0]
    if over and over["overload"]["fallback_status_to_text_s"]:
        o = over["overload"]
        p99 = o["fallback_status_to_text_s"]["p99"]
        rows.append(
            (
                "Overload: fallback text ≤ 50 ms p99 after the queue wait ends",
                f"{ms(p99, 1)} ms p99 from the fallback status ({o['past_queue']} of {over['n']} past the queue)",
                p99 <= 0.050,
            )
        )
    else:
        rows.append(
            ("Overload: fallback text ≤ 50 ms p99 after the queue wait ends", "not run", None)
        )
    cached = (found.get("cache") or {}).get("runs", [None])[0]
    if cached and cached["hit_done_s"]:
        p99 = cached["hit_done_s"]["p99"]
        rows.append(
            (
                "Cache hit: `done` within 20 ms p99",
                f"{ms(p99, 1)} ms p99 ({cached['hit_done_s']['n']} hits)",
                p99 <= 0.020,
            )
        )
    else:
        rows.append(("Cache hit: `done` within 20 ms p99", "not run", None))
    lines = ["| target | measured | verdict |", "|---|---|---|"]
    lines += [
        f"| {t} | {m} | {verdict(ok) if ok is not None or m == 'not run' else 'reported'} |"
        for t, m, ok in rows
    ]
    return lines
