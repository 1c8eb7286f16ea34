"""A figure as the text of a RESULTS.md table cell: milliseconds, percentiles, the load average."""

from __future__ import annotations

from typing import Any

Run = dict[str, Any]


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
