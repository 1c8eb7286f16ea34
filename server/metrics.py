"""Prometheus metrics, one registry per app, names prefixed `crossroads_`.

With several workers on a machine (run.py's supervisor) each worker writes its figures to
files in one directory (prometheus_client's multiprocess mode, chosen by run.py through
PROMETHEUS_MULTIPROC_DIR before any worker starts), and whichever worker answers /metrics reads
them all: counters and histograms are summed over the workers, dead ones included (a restart
takes nothing back); each gauge is combined as GAUGE_MODES says."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
import psutil
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

LEVEL_VALUE = {"ok": 0, "soft": 1, "hard": 2}

Mode = Literal["livesum", "liveall", "livemostrecent"]
# How a gauge read live in each worker is combined over the workers of one machine. Unlisted
# gauges are summed over the live workers (open streams, viewers, the generations each writes).
GAUGE_MODES: dict[str, Mode] = {
    # Per worker, labelled with its pid: a sum of memory levels, or of RSS against a per-process
    # limit, means nothing.
    "crossroads_rss_bytes": "liveall",
    "crossroads_watchdog_level": "liveall",
    # The deployment's own values (distributed admission keeps them in Redis) as a worker last
    # saw them; the latest reading wins, since a sum would count them once per worker.
    "crossroads_queue_depth": "livemostrecent",
    "crossroads_slots_in_use": "livemostrecent",
    "crossroads_slots_total": "livemostrecent",
    "crossroads_model_concurrency_limit": "livemostrecent",
}
# How often each worker writes its gauges for the others' scrapes (multiprocess mode only).
PUBLISH_INTERVAL_S = 1.0
COLLECT_TRIES = 3


@dataclass(frozen=True)
class _Live:
    gauge: Gauge
    read: Callable[[], float]
    read_at: Callable[[], float] | None


class Metrics:
    """Counters updated where things happen; gauges read live state when scraped (and, with
    several workers, every PUBLISH_INTERVAL_S too, so another worker's scrape sees them)."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess_dir = multiprocess_dir
        r = self.registry
        self.streams = Gauge(
            "crossroads_active_streams",
            "Open SSE step streams.",
            registry=r,
            multiprocess_mode="livesum",
        )
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
        self.takeovers = Counter(
            "crossroads_takeovers_total",
            "Steps this worker wrote again after their writer's lease lapsed (distributed "
            "backend: a worker died, or was paused past lease_s).",
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
        self._gauges: dict[str, _Live] = {}
        self._refreshes: dict[str, Callable[[], Awaitable[None]]] = {}
        # Deployment gauges: the reading (its time, or its value) this worker last wrote.
        self._published: dict[str, float] = {}

    def gauge(
        self,
        name: str,
        doc: str,
        read: Callable[[], float],
        *,
        read_at: Callable[[], float] | None = None,
    ) -> None:
        """A gauge read when scraped; registering a name again re-points it (a lifespan run
        again on the same app) instead of failing as a duplicate. `read_at`, for a deployment
        value (GAUGE_MODES): when this worker last read it where it is kept, 0 before."""
        known = self._gauges.get(name)
        gauge = known.gauge if known else None
        if gauge is None:
            mode = GAUGE_MODES.get(name, "livesum")
            gauge = Gauge(name, doc, registry=self.registry, multiprocess_mode=mode)
        self._gauges[name] = _Live(gauge, read, read_at)
        if self.multiprocess_dir is None:
            gauge.set_function(read)

    def refresh_on_scrape(self, name: str, refresh: Callable[[], Awaitable[None]]) -> None:
        """Await `refresh` before each scrape, so that values kept elsewhere (the deployment's
        slots, in Redis) are read then; a name registered again is re-pointed."""
        self._refreshes[name] = refresh

    async def scrape(self) -> bytes:
        """/metrics: the values kept elsewhere read anew, then the text."""
        for refresh in self._refreshes.values():
            await refresh()
        return self.render()

    def publish(self) -> None:
        """Multiprocess mode: write each gauge's reading to this worker's file. A deployment
        value is written only when this worker has read it anew (or, without a time, when it
        changed), so that the latest value across the workers is the latest reading any of
        them made: not an old one rewritten by a worker that has looked at nothing since, nor
        the blank start of a worker just (re)started while the others know better."""
        shown: set[str] | None = None
        for name, live in self._gauges.items():
            value = float(live.read())
            if GAUGE_MODES.get(name) == "livemostrecent":
                stamp = live.read_at() if live.read_at is not None else value
                if self._published.get(name) == stamp:
                    continue
                if name not in self._published and stamp == 0:
                    shown = self._shown() if shown is None else shown
                    if name in shown:  # another worker's reading stands until this one reads
                        self._published[name] = stamp
                        continue
                self._published[name] = stamp
            live.gauge.set(value)

    def _shown(self) -> set[str]:
        """The gauges some worker of this machine has written a reading of."""
        collector = MultiProcessCollector(None, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        try:
            families = collector.collect()  # type: ignore[no-untyped-call]
        except FileNotFoundError:  # a dead worker's file went meanwhile: cover no one
            return set(self._gauges)
        return {family.name for family in families if family.samples}

    async def publish_forever(self) -> None:
        """Keep this worker's gauges fresh for the other workers' scrapes (a task for the app's
        lifespan; it ends at once with one worker, where gauges are read when scraped)."""
        if self.multiprocess_dir is None:
            return
        while True:
            self.publish()
            await anyio.sleep(PUBLISH_INTERVAL_S)

    def render(self) -> bytes:
        if self.multiprocess_dir is None:
            return generate_latest(self.registry)
        self.publish()
        forget_dead_workers(self.multiprocess_dir)
        machine = CollectorRegistry()
        MultiProcessCollector(machine, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        for _ in range(COLLECT_TRIES - 1):
            try:
                return generate_latest(machine)
            except FileNotFoundError:
                continue  # another worker removed a dead one's file between listing and reading
        return generate_latest(machine)


def forget_dead_workers(directory: Path) -> None:
    """Drop the live gauges of workers that have exited (a SIGKILLed one never says so), so an
    RSS or a stream count of a dead process is never shown; their counters stay in the sums."""
    pids = {int(path.stem.rpartition("_")[2]) for path in directory.glob("gauge_live*_*.db")}
    for pid in pids:
        if not _alive(pid):
            # Another worker's scrape may be removing the same files.
            with contextlib.suppress(FileNotFoundError):
                mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    # A zombie has exited: only its parent has yet to reap it.
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
