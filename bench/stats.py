"""Percentiles and the per-run figures computed from the load client's records."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

Record = dict[str, Any]


def percentile(ordered: list[float], p: float) -> float:
    """Linear interpolation between closest ranks, on an already sorted list."""
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def dist(values: Iterable[float | None]) -> dict[str, float] | None:
    """p50/p95/p99/max (seconds) of the values that exist, or None when none do."""
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    return {
        "n": len(ordered),
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
        "max": ordered[-1],
    }


def between(start: str, end: str) -> Callable[[Record], float | None]:
    def span(rec: Record) -> float | None:
        a, b = rec.get(start), rec.get(end)
        return None if a is None or b is None else b - a

    return span


def stream_figures(records: list[Record], *, through_app: bool) -> dict[str, Any]:
    """What the issue asks of every streaming case, from the client's per-stream records."""
    first = "post" if through_app else "req"
    ok = [r for r in records if r.get("ok")]
    errors = Counter(r["error"] for r in records if r.get("error"))
    starts = [r[first] for r in records if r.get(first) is not None]
    ends = [r["done"] for r in ok]
    figures: dict[str, Any] = {
        "n": len(records),
        "completed": len(ok),
        "completion_rate": len(ok) / len(records) if records else 0.0,
        "fallbacks": sum(1 for r in records if r.get("fallback") is not None),
        "ttfb_s": dist(map(between("req", "head"), records)),
        "ttft_s": dist(map(between("req", "first_text"), records)),
        "total_s": dist(map(between(first, "done"), records)),
        "largest_gap_s": max((r.get("max_gap", 0.0) for r in records), default=0.0),
        "gap_s": dist(r.get("max_gap") for r in records),
        "sse_text_events": sum(r.get("text_events", 0) for r in records),
        "heartbeats": sum(r.get("comments", 0) for r in records),
        "wall_s": (max(ends) - min(starts)) if ends and starts else None,
        "errors": dict(errors.most_common(5)),
    }
    if through_app:
        figures["post_to_text_s"] = dist(map(between("post", "first_text"), records))
        figures["post_s"] = dist(map(between("post", "post_done"), records))
    return figures


def per(amount: float | None, count: int) -> float | None:
    return None if amount is None or count <= 0 else amount / count
