"""bench/RESULTS.md: the figures of the latest run of each case, and the issue's targets."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.cases import HEARTBEAT_S

NOTES_START, NOTES_END = "<!-- notes -->", "<!-- /notes -->"
DEFAULT_NOTES = "(Findings from profiling go here; `python -m bench` keeps this section.)"
Run = dict[str, Any]


def load(results_dir: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(results_dir.glob("*.json")):
        data = json.loads(path.read_text())
        found[data["case"]] = data
    return found


def ms(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value * 1000:.{digits}f}"


def quad(d: dict[str, float] | None, digits: int = 0) -> str:
    if not d:
        return "-"
    return " / ".join(ms(d[k], digits) for k in ("p50", "p95", "p99", "max"))


def num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def load_cell(run: Run) -> str:
    start, end = run.get("loadavg", {}).get("start"), run.get("loadavg", {}).get("end")
    return f"{num(start[0]) if start else '-'} → {num(end[0]) if end else '-'}"


def streams_table(runs: list[Run]) -> list[str]:
    lines = [
        "| run | N | complete | TTFB ms p50/p95/p99/max | first text ms p50/p95/p99/max "
        "| POST→text ms p50/p99 | total s p50/p99 | largest gap s | server peak RSS MB "
        "| server CPU s | CPU ms/stream | CPU µs/chunk | upstream CPU s | client CPU s | load 1 min |",
        "|---|---:|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run in runs:
        s, server = run["streams"], run["server"]
        post = s.get("post_to_text_s")
        total = s.get("total_s") or {}
        up_cpu = (
            run.get("upstream_usage", {}).get("cpu_s")
            if run["kind"] != "direct"
            else server["cpu_s"]
        )
        post_cell = f"{ms(post['p50'])} / {ms(post['p99'])}" if post else "-"
        lines.append(
            f"| {run['label']} | {run['n']} | {s['completed']}/{s['n']} | {quad(s['ttfb_s'], 1)} "
            f"| {quad(s['ttft_s'])} | {post_cell} "
            f"| {num(total.get('p50'))} / {num(total.get('p99'))} | {num(s['largest_gap_s'])} "
            f"| {num(server['peak_rss_mb'], '.0f')} | {num(server['cpu_s'])} "
            f"| {ms(server['cpu_per_stream_s'], 1)} "
            f"| {num(server['cpu_per_chunk_s'] * 1e6 if server['cpu_per_chunk_s'] else None, '.0f')} "
            f"| {num(up_cpu)} | {num(run['client'].get('cpu_s'))} | {load_cell(run)} |"
        )
    return lines


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


def overload_section(found: dict[str, dict[str, Any]]) -> list[str]:
    over = (found.get("overload") or {}).get("runs", [None])[0]
    if not over:
        return []
    o, s = over["overload"], over["streams"]
    return [
        "",
        f"### Overload: {over['n']} visitors, {over['slots']} slots, queue_timeout_s {over['settings']['limits.queue_timeout_s']:g}",
        "",
        "| figure | p50 / p95 / p99 / max ms |",
        "|---|---|",
        f"| fallback status → first fallback text | {quad(o['fallback_status_to_text_s'], 1)} |",
        f"| estimated queue-wait end → first fallback text | {quad(o['queue_end_estimate_to_text_s'], 1)} |",
        f"| POST /sessions → first fallback text | {quad(o['post_to_fallback_text_s'])} |",
        f"| stream request → first byte (all) | {quad(s['ttfb_s'], 1)} |",
        "",
        f"{s['completed']}/{s['n']} streams ended with `done`: {o['served_by_model']} written by the model, "
        f"{o['past_queue']} past the queue; largest silent gap {s['largest_gap_s']:.2f} s; "
        f"app peak RSS {over['server']['peak_rss_mb']:.0f} MB; load {load_cell(over)}.",
    ]


def idle_section(found: dict[str, dict[str, Any]]) -> list[str]:
    idle = (found.get("idle") or {}).get("runs", [None])[0]
    if not idle:
        return []
    rss = idle["rss_mb"]
    hb = idle["heartbeats_per_stream"] or {}
    return [
        "",
        f"### Idle viewers: {idle['n']} streams on queued generations ({idle['slots']} slots busy on an upstream that has not sent its first token)",
        "",
        f"- app RSS: {rss['baseline']:.1f} MB before, {rss['sessions']:.1f} MB with {idle['n']} sessions "
        f"waiting, {rss['streams']:.1f} MB with their streams open, {rss['hold_end']:.1f} MB after "
        f"{idle['held_s']:.0f} s on heartbeats; peak {idle['peak_rss_mb']:.1f} MB.",
        f"- per open stream {idle['rss_per_viewer_kb']:.1f} KB; with its session and waiting generation "
        f"{idle['rss_per_session_and_viewer_kb']:.1f} KB.",
        f"- {idle['opened']}/{idle['n']} opened in {num(idle['open_all_s'])} s (first event p99 "
        f"{ms((idle['first_event_s'] or {}).get('p99'), 1)} ms after its request), {idle['with_text']} got text (expected 0); "
        f"heartbeats per stream p50 {num(hb.get('p50'), '.0f')}, largest silent gap {idle['largest_gap_s']:.2f} s; "
        f"app CPU during the hold {num(idle['app_cpu_during_hold_s'])} s; load {load_cell(idle)}.",
    ]


def cache_section(found: dict[str, dict[str, Any]]) -> list[str]:
    c = (found.get("cache") or {}).get("runs", [None])[0]
    if not c:
        return []
    return [
        "",
        f"### Cache hits: {c['n']} scenarios regenerated after a restart, one request at a time",
        "",
        "| figure | p50 / p95 / p99 / max ms |",
        "|---|---|",
        f"| stream request → `done` (cache hit) | {quad(c['hit_done_s'], 1)} |",
        f"| stream request → first byte (cache hit) | {quad(c['hit_ttfb_s'], 1)} |",
        f"| stream request → text (cache hit) | {quad(c['hit_ttft_s'], 1)} |",
        f"| stream request → `done` (the same step again, finished, from SQLite) | {quad(c['replay_done_s'], 1)} |",
        f"| stream request → `done` (cache hit, diagnostic run with `frame_ms = 0`) | {quad(c.get('frame_ms_0_hit_done_s'), 1)} |",
        "",
        f"The first request after the restart (cold) took {ms(c['cold_done_s'], 1)} ms. Scenario sources "
        f"after the run: {c['sources_after']} ({c['reset_to_generating']} reset to `generating`). "
        f"App CPU {ms(c['app_cpu_per_request_s'], 2)} ms per request; load {load_cell(c)}.",
    ]


def fast_section(found: dict[str, dict[str, Any]]) -> list[str]:
    runs = list((found.get("fast") or {}).get("runs", []))
    if not runs:
        return []
    runs.sort(key=lambda r: (r["n"], r["kind"] != "direct"))
    rate = runs[0]["upstream"]["rate"]
    return [
        "",
        f"### A faster upstream: {runs[0]['upstream']['tokens']} tokens at {rate:g} tokens/s",
        "",
        *streams_table(runs),
    ]


def journeys_section(found: dict[str, dict[str, Any]]) -> list[str]:
    runs = sorted((found.get("journeys") or {}).get("runs", []), key=lambda r: r["n"])
    if not runs:
        return []
    first = runs[0]
    served: list[int] = []
    for r in runs:  # the largest N before the first that does not serve
        if not r["serves"]:
            break
        served.append(r["n"])
    lines = [
        "",
        f"### Journeys: N people, each a whole journey (scenario, {first['questions']} questions, report)",
        "",
        f"Every step streams {TOKENS_NOTE}; each person thinks {first['think_s'][0]:g}-{first['think_s'][1]:g} s "
        f"before every answer and types one of ten answers of realistic length; arrivals are spread over "
        f"the first {first['ramp_s']:g} s; rate limits off. First text is timed from the moment the step "
        "opened for the person (POST /sessions, the scenario's `done`, the answer's POST).",
        "",
        "| N | journeys complete | steps fell back | first text ms p50/p95/p99/max | scenario / question / report p99 ms "
        "| largest gap s | CPU s per journey | app peak RSS MB | load 1 min |",
        "|---:|---:|---:|---|---|---:|---:|---:|---|",
    ]
    for r in runs:
        kinds = r["first_text_by_kind_s"]
        per_kind = " / ".join(
            ms((kinds.get(k) or {}).get("p99")) for k in ("scenario", "question", "report")
        )
        lines.append(
            f"| {r['n']:,} | {r['completed']}/{r['n']} | {r['fell_back']} of {r['steps']} | {quad(r['first_text_s'])} "
            f"| {per_kind} | {num(r['largest_gap_s'])} | {num(r['cpu_per_journey_s'], '.3f')} "
            f"| {num(r['peak_rss_mb'], '.0f')} | {load_cell(r)} |"
        )
    people = f"{max(served):,}" if served else f"fewer than {first['n']:,}"
    lines += [
        "",
        f"People per process (the largest N measured with first text p99 under 1 s and nothing falling "
        f"back): **{people}**.",
    ]
    return lines


def cluster_section(found: dict[str, dict[str, Any]]) -> list[str]:
    runs = list((found.get("cluster") or {}).get("runs", []))
    if not runs:
        return []
    runs.sort(key=lambda r: (r["n"], r.get("workers", 1)))
    lines = [
        "",
        "### Cluster: 1 embedded worker against 2 distributed workers (Redis, PostgreSQL, nginx)",
        "",
        "The same fake upstream and N visitors at once; the distributed workers sit behind nginx "
        "round-robin (`server/cluster.py`'s own Redis, PostgreSQL and nginx). App CPU is the sum "
        "over the workers; Redis commands are INFO commandstats' calls over the measured window, "
        "per text frame the clients received and per relayed chunk.",
        "",
        "| run | N | complete | first text ms p50/p99 | total s p50 | largest gap s "
        "| app CPU s (per worker) | app µs/chunk | Redis CPU s | Redis µs/chunk | Redis commands "
        "| per frame / per chunk | nginx CPU s | PostgreSQL CPU s | upstream CPU s | load 1 min |",
        "|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in runs:
        s, server = r["streams"], r["server"]
        ft = s.get("ttft_s") or {}
        redis = r.get("redis") or {}
        per_worker = " + ".join(num(c) for c in r.get("workers_cpu_s", []))
        redis_chunk = redis.get("cpu_per_chunk_s")
        lines.append(
            f"| {r['label']} | {r['n']:,} | {s['completed']}/{s['n']} "
            f"| {ms(ft.get('p50'))} / {ms(ft.get('p99'))} | {num((s.get('total_s') or {}).get('p50'))} "
            f"| {num(s['largest_gap_s'])} | {num(server['cpu_s'])}"
            + (f" ({per_worker})" if per_worker else "")
            + f" | {num(server['cpu_per_chunk_s'] * 1e6 if server['cpu_per_chunk_s'] else None, '.0f')} "
            f"| {num(redis.get('cpu_s'))} | {num(redis_chunk * 1e6 if redis_chunk else None, '.1f')} "
            f"| {redis.get('commands', '-')} | {num(redis.get('commands_per_frame'))} / "
            f"{num(redis.get('commands_per_chunk'))} | {num(r.get('nginx_cpu_s'))} "
            f"| {num(r.get('postgres_cpu_s'))} | {num(r.get('upstream_usage', {}).get('cpu_s'))} "
            f"| {load_cell(r)} |"
        )
    for r in runs:
        by_command = (r.get("redis") or {}).get("by_command")
        frames = r["streams"]["sse_text_events"]
        if by_command and frames:
            top = ", ".join(
                f"{name} {count / frames:.2f}" for name, count in list(by_command.items())[:6]
            )
            lines += ["", f"Redis commands per frame, {r['label']}: {top}."]
    return lines


TOKENS_NOTE = "200 tokens at 50 tokens/s after 0.3 s from the fake upstream"


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
