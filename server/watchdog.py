"""The memory watchdog: a pure decision over RSS, and the task that samples and sheds."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import gc
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import anyio
import psutil

from server import logs

Level = Literal["ok", "soft", "hard"]
LEVELS: tuple[Level, ...] = ("ok", "soft", "hard")
# Back under a level by this many points of the limit before stepping down, so a
# process hovering at a threshold does not flap between levels every sample.
HYSTERESIS_PCT = 5.0
RELEASE_EVERY = 10  # samples between two releases of memory while the level stays high


@dataclass(frozen=True)
class Thresholds:
    limit_mb: float
    soft_pct: float
    hard_pct: float
    hysteresis_pct: float = HYSTERESIS_PCT


def decide(rss_mb: float, thresholds: Thresholds, current: Level) -> Level:
    """The level for this sample: up at once, down only past the hysteresis band."""
    pct = 100.0 * rss_mb / thresholds.limit_mb
    band = thresholds.hysteresis_pct
    if pct >= thresholds.hard_pct or (current == "hard" and pct >= thresholds.hard_pct - band):
        return "hard"
    if pct >= thresholds.soft_pct or (current != "ok" and pct >= thresholds.soft_pct - band):
        return "soft"
    return "ok"


def process_rss_mb() -> float:
    """This process's resident memory. Every request reads it twice (server/middleware.py), so
    it is read with one system call on a file kept open, /proc/self/statm on Linux: psutil opens,
    reads and parses a /proc file per reading, 26 us against 3 us, and building its process
    handle read another (together 7-9 % of the app's CPU under a burst of sessions,
    bench/RESULTS.md). Elsewhere, psutil."""
    pid = os.getpid()
    try:
        return int(os.pread(_statm(pid), 64, 0).split()[1]) * _PAGE / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return float(psutil.Process(pid).memory_info().rss) / (1024 * 1024)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@functools.lru_cache(maxsize=1)
def _statm(pid: int) -> int:
    """The open statm file of this process, opened once per pid (a forked worker opens its own:
    /proc/self named the parent when the parent opened it)."""
    return os.open(f"/proc/{pid}/statm", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))


def heap_trimmer() -> Callable[[], None]:
    """glibc's malloc_trim hands freed heap pages back to the system; a no-op elsewhere."""
    name = ctypes.util.find_library("c")
    try:
        trim = ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):
        trim = None

    def trim_heap() -> None:
        if trim is not None:
            trim(0)

    return trim_heap


class Shedder(Protocol):
    """What the app does at each level; the watchdog calls it on every change."""

    def apply(self, level: Level, previous: Level) -> None: ...

    def counts(self) -> dict[str, int]: ...


class Watchdog:
    """Samples the RSS every interval, decides the level, logs and applies every change."""

    def __init__(
        self,
        thresholds: Thresholds,
        shedder: Shedder,
        *,
        interval_s: float,
        probe: Callable[[], float] = process_rss_mb,
        trim: Callable[[], None] | None = None,
    ) -> None:
        self.thresholds = thresholds
        self.shedder = shedder
        self.interval_s = interval_s
        self.probe = probe
        self.level: Level = "ok"
        self.rss_mb = 0.0
        self.changes = 0
        self._high_samples = 0
        self._trim = trim or heap_trimmer()

    async def run(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:
                # The task runs in the app's task group: an error escaping here would stop
                # the whole server, so a failed reading is logged and tried again.
                logs.log.exception("Memory watchdog sample failed")
            await anyio.sleep(self.interval_s)

    def sample(self) -> Level:
        self.rss_mb = self.probe()
        level = decide(self.rss_mb, self.thresholds, self.level)
        self._high_samples = self._high_samples + 1 if level != "ok" else 0
        # A full collection stalls the event loop: on the way up, then now and then while high.
        if level != "ok" and (level != self.level or self._high_samples % RELEASE_EVERY == 0):
            self.release_memory()
        if level != self.level:
            previous, self.level = self.level, level
            self.changes += 1
            self.shedder.apply(level, previous)
            self._log(level, previous)
        return level

    def release_memory(self) -> None:
        """CPython rarely returns memory on its own: collect, then trim the C heap."""
        gc.collect()
        self._trim()

    def _log(self, level: Level, previous: Level) -> None:
        figures: dict[str, Any] = {
            "memory_level": level,
            "previous": previous,
            "rss_mb": round(self.rss_mb, 1),
            "limit_mb": self.thresholds.limit_mb,
            "rss_pct": round(100 * self.rss_mb / self.thresholds.limit_mb, 1),
            **self.shedder.counts(),
        }
        if level == "ok":
            logs.event(logging.INFO, "Memory recovered: admitting model calls again", **figures)
        elif LEVELS.index(level) > LEVELS.index(previous):
            what = (
                "Resource-intensive: memory at the soft level, new steps fall back"
                if level == "soft"
                else "Resource-intensive: memory at the hard level, shedding generations"
            )
            logs.event(logging.WARNING, what, **figures)
        else:
            logs.event(
                logging.WARNING, "Resource-intensive: memory back to the soft level", **figures
            )
