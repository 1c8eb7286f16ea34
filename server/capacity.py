"""How many model calls the upstream copes with at once, learned from how its calls end (AIMD)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from server import logs

# Outcomes that say the upstream had more calls than it could serve: it cut a stream (as
# llama.cpp's server does to every running stream when a new one arrives), answered 429, or
# gave no first token in time.
OVERLOAD = frozenset({"incomplete_stream", "rate_limited", "first_token_timeout"})
DECREASE = 0.5  # multiplicative decrease, as TCP
# A first token this many times slower than usual, and by this much, means the upstream
# queues our calls behind each other (a server that serves one at a time without cutting).
SLOW_FACTOR = 3.0
SLOW_MARGIN_S = 1.5
BASELINE_WEIGHT = 0.2
# An overload with n calls running makes the next raise to n wait four times as long: each
# probe of a level that failed costs one cut answer, so against an upstream that really serves
# one call at a time the probes come after 4, 16, then every 64 successes. A level that holds
# for a whole window halves its patience again.
PATIENCE_GROWTH = 4
PATIENCE_CAP = 64


class LimitStore(Protocol):
    """Where the learned limit lives. Embedded: a number in this process. Distributed: one value
    (say a Redis key) that every process reads and updates, so the deployment learns once. The
    calls are synchronous on purpose: admission reads the limit on every acquire and release, so
    a Redis store answers from the value it last saw (refreshed in the background) and sends
    its updates (a small script doing the change atomically) without making a caller wait."""

    def read(self) -> int: ...

    def update(self, change: Callable[[int], int]) -> tuple[int, int]:
        """Apply `change` to the stored value atomically; return (old, new)."""
        ...


class InProcessLimit:
    def __init__(self, value: int) -> None:
        self.value = value

    def read(self) -> int:
        return self.value

    def update(self, change: Callable[[int], int]) -> tuple[int, int]:
        old = self.value
        self.value = change(old)
        return old, self.value


@dataclass(frozen=True)
class Sample:
    """One model call attempt, as admission saw it end."""

    outcome: str
    started: float
    first_token_s: float | None
    in_use: int
    waiting: int


class AdaptiveLimit:
    """The concurrent model calls admitted: lowered on overload (halved, to no more than the
    calls that were running less one, never below 1), raised by one after a window of successes
    while calls were waiting, up to `maximum`. `adaptive=False` keeps it at `maximum`."""

    def __init__(
        self,
        maximum: int,
        *,
        adaptive: bool = True,
        store: LimitStore | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum = maximum
        self.adaptive = adaptive
        self.store = store or InProcessLimit(maximum)
        self._clock = clock
        self._successes = 0
        self._probing = False
        self._patience: dict[int, int] = {}  # per level: windows of success needed to rise to it
        self._baseline_s: float | None = None
        self._last_decrease = -math.inf

    @property
    def value(self) -> int:
        return max(1, min(self.maximum, self.store.read()))

    def observe(self, sample: Sample) -> bool:
        """Learn from one attempt; return whether the limit rose (waiters may now be admitted)."""
        if not self.adaptive:
            return False
        if sample.outcome in OVERLOAD:
            self._decrease(sample.outcome, sample)
            return False
        if sample.outcome != "ok":
            return False  # the caller left, or a fault that says nothing about capacity
        if sample.first_token_s is not None and self._slow(sample.first_token_s):
            self._decrease("slow_first_token", sample)
            return False
        return self._succeeded(sample)

    def _slow(self, first_token_s: float) -> bool:
        base = self._baseline_s
        if base is None:
            self._baseline_s = first_token_s
            return False
        if first_token_s > base * SLOW_FACTOR and first_token_s - base > SLOW_MARGIN_S:
            return True
        self._baseline_s = base + (first_token_s - base) * BASELINE_WEIGHT
        return False

    def _decrease(self, why: str, sample: Sample) -> None:
        if sample.started < self._last_decrease:
            # A call sent before the last decrease failed with the same crowd that caused it:
            # one crowd lowers the limit once (as TCP halves once per window of losses).
            return
        level = self.value
        crowded = min(level, sample.in_use)
        if crowded > 1:
            patience = self._patience.get(crowded, 1) * PATIENCE_GROWTH
            self._patience[crowded] = min(PATIENCE_CAP, patience)
        self._probing = False
        self._successes = 0
        self._last_decrease = self._clock()
        cap = max(1, min(int(level * DECREASE), sample.in_use - 1))
        old, new = self.store.update(lambda value: max(1, min(value, cap)))
        if new != old:
            _log(logging.WARNING, old, new, why, sample, self.maximum)

    def _succeeded(self, sample: Sample) -> bool:
        level = self.value
        if level >= self.maximum:
            return False
        if sample.waiting == 0:
            return False  # the limit held no one back: no reason to try a higher one
        self._successes += 1
        if self._probing and self._successes >= level:
            self._probing = False  # the raised level held for a whole window
            self._patience[level] = max(1, self._patience.get(level, 1) // 2)
        if self._successes < level * self._patience.get(level + 1, 1):
            return False
        old, new = self.store.update(lambda value: min(self.maximum, value + 1))
        self._successes = 0
        self._probing = new > old
        if new > old:
            _log(logging.INFO, old, new, "coping", sample, self.maximum)
        return new > old


def _log(level: int, old: int, new: int, why: str, sample: Sample, maximum: int) -> None:
    logs.event(
        level,
        "Model concurrency limit changed",
        old=old,
        new=new,
        why=why,
        maximum=maximum,
        in_use=sample.in_use,
        waiting=sample.waiting,
    )
