"""RESULTS.md's tables: the streams table and one section per case."""

from __future__ import annotations

from typing import Any

from bench.cells import Run, load_cell, ms, num, quad

TOKENS_NOTE = "200 tokens at 50 tokens/s after 0.3 s from the fake upstream"


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
