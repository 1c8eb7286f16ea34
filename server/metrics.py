"""Prometheus metrics, one registry per app, names prefixed `crossroads_`."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LEVEL_VALUE = {"ok": 0, "soft": 1, "hard": 2}


class Metrics:
    """Counters updated where things happen; gauges read live state when scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.streams = Gauge("crossroads_active_streams", "Open SSE step streams.", registry=r)
        self.generations = Counter(
            "crossroads_generations_total",
            "Finished generations by where the text came from and how it ended.",
            ["source", "outcome"],
            registry=r,
        )
        self.fallbacks = Counter(
            "crossroads_fallbacks_total",
            "Steps not written by the live model, by reason and by the tier that served them.",
            ["reason", "tier"],
            registry=r,
        )
        self.first_chunk = Histogram(
            "crossroads_time_to_first_chunk_seconds",
            "From a step's start to its first text.",
            ["source"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40),
            registry=r,
        )
        self.attempts = Counter(
            "crossroads_model_attempts_total",
            "Requests to the model, by how each ended: ok, cancelled, or the failure's reason.",
            ["outcome"],
            registry=r,
        )
        self.cache_lookups = Counter(
            "crossroads_cache_lookups_total", "Response cache lookups.", ["result"], registry=r
        )
        # Both results exported from the start, so a hit ratio is 0 rather than missing.
        for result in ("hit", "miss"):
            self.cache_lookups.labels(result)
        self.terminations = Counter(
            "crossroads_terminations_total",
            "Model calls ended to prevent a worker timeout, by reason.",
            ["reason"],
            registry=r,
        )
        self.step_checks = Counter(
            "crossroads_step_checks_total",
            "Model-written steps checked before they count as the model's, by kind and outcome "
            "(passed, trimmed at the token cap, or the reason it fell back).",
            ["kind", "outcome"],
            registry=r,
        )
        self.abandoned = Counter(
            "crossroads_abandoned_generations_total",
            "Generations cancelled after their last viewer left.",
            registry=r,
        )
        self.high_risk = Counter(
            "crossroads_high_risk_requests_total",
            "Requests that ran long or grew memory.",
            registry=r,
        )
        self.rejected = Counter(
            "crossroads_rejected_requests_total",
            "Requests answered with an error.",
            ["status"],
            registry=r,
        )
        self.ratelimit_unavailable = Counter(
            "crossroads_ratelimit_unavailable_total",
            "Rate limit checks allowed unchecked because Redis did not answer, by limit.",
            ["limit"],
            registry=r,
        )
        for name in ("sessions", "answers"):
            self.ratelimit_unavailable.labels(name)
        self.report_feedback = Counter(
            "crossroads_report_feedback_total",
            "Reports their reader marked as not fitting them.",
            registry=r,
        )
        self._gauges: dict[str, Gauge] = {}

    def gauge(self, name: str, doc: str, read: Callable[[], float]) -> None:
        """A gauge read when scraped; registering a name again re-points it (a lifespan run
        again on the same app) instead of failing as a duplicate."""
        gauge = self._gauges.get(name)
        if gauge is None:
            gauge = self._gauges[name] = Gauge(name, doc, registry=self.registry)
        gauge.set_function(read)

    def render(self) -> bytes:
        return generate_latest(self.registry)
