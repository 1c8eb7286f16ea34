"""The learned concurrency limit: down on overload, up while the upstream copes, one value."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from server.capacity import PATIENCE_CAP, AdaptiveLimit, InProcessLimit, Sample


def ok(in_use: int, waiting: int = 1, first_token_s: float = 0.5, started: float = 0.0) -> Sample:
    return Sample("ok", started, first_token_s, in_use, waiting)


def cut(in_use: int, outcome: str = "incomplete_stream", started: float = 1e9) -> Sample:
    # Sent after any decrease unless told otherwise: each cut is news.
    return Sample(outcome, started, None, in_use, 0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_cut_lowers_the_limit_below_the_calls_that_were_running() -> None:
    limit = AdaptiveLimit(16)
    limit.observe(cut(in_use=4))
    assert limit.value == 3  # not 8: four at once were already too many
    limit.observe(cut(in_use=16))
    assert limit.value == 1  # halved, and at most the calls running less one
    limit.observe(cut(in_use=1))
    assert limit.value == 1  # never below one


@pytest.mark.parametrize("outcome", ["incomplete_stream", "rate_limited", "first_token_timeout"])
def test_every_overload_signal_lowers_the_limit(outcome: str) -> None:
    limit = AdaptiveLimit(8)
    limit.observe(cut(in_use=8, outcome=outcome))
    assert limit.value == 4


@pytest.mark.parametrize("outcome", ["connection_error", "upstream_status", "cancelled"])
def test_faults_that_say_nothing_about_capacity_leave_it_alone(outcome: str) -> None:
    limit = AdaptiveLimit(8)
    limit.observe(cut(in_use=8, outcome=outcome))
    assert limit.value == 8


def test_it_rises_by_one_after_a_window_of_successes_that_used_every_slot() -> None:
    limit = AdaptiveLimit(4)
    limit.observe(cut(in_use=1))
    assert limit.value == 1
    assert limit.observe(ok(in_use=1))  # a window at 1 is one success
    assert limit.value == 2
    assert not limit.observe(ok(in_use=2))
    assert limit.observe(ok(in_use=2))
    assert limit.value == 3
    for _ in range(10):
        assert not limit.observe(ok(in_use=3, waiting=0))  # nobody held back: no reason
    assert limit.value == 3


def test_it_never_rises_above_the_maximum() -> None:
    limit = AdaptiveLimit(2)
    for _ in range(10):
        limit.observe(ok(in_use=2))
    assert limit.value == 2


def test_a_one_at_a_time_upstream_is_probed_ever_more_rarely() -> None:
    """Against a server that cuts a stream whenever two run, each probe of 2 costs one cut:
    the probes back off, so almost every call succeeds."""
    limit = AdaptiveLimit(16)
    limit.observe(cut(in_use=2))
    assert limit.value == 1
    cuts = 0
    for _ in range(300):
        if limit.value > 1:
            cuts += 1
            limit.observe(cut(in_use=2))
        else:
            limit.observe(ok(in_use=1))
    assert limit.value <= 2
    # Probes after 4, 16, then every 64 successes: about one call in 50 is cut.
    assert 300 // PATIENCE_CAP <= cuts <= 2 + 300 // PATIENCE_CAP + 1


def test_a_level_that_holds_is_trusted_again_sooner() -> None:
    limit = AdaptiveLimit(4)
    limit.observe(cut(in_use=2))  # two at once were too many: down to 1
    for _ in range(3):
        assert not limit.observe(ok(in_use=1))
    assert limit.observe(ok(in_use=1))  # four successes, then a probe of 2
    assert limit.value == 2
    assert not limit.observe(ok(in_use=2))
    assert limit.observe(ok(in_use=2))  # 2 held a whole window, and 3 is tried next
    assert limit.value == 3
    limit.observe(cut(in_use=3))  # three were too many: down to 1
    assert limit.value == 1
    assert not limit.observe(ok(in_use=1))
    assert limit.observe(ok(in_use=1))  # 2 held before: two successes, not four
    assert limit.value == 2


def test_a_crowd_cut_together_lowers_the_limit_once() -> None:
    clock = Clock()
    limit = AdaptiveLimit(16, clock=clock)
    limit.observe(cut(in_use=16, started=90.0))
    assert limit.value == 8
    for _ in range(5):
        limit.observe(cut(in_use=16, outcome="first_token_timeout", started=95.0))
    assert limit.value == 8
    limit.observe(cut(in_use=8, started=101.0))  # a call sent after the decrease
    assert limit.value == 4


def test_a_slow_first_token_lowers_the_limit_once_per_crowd() -> None:
    clock = Clock()
    limit = AdaptiveLimit(8, clock=clock)
    for _ in range(5):
        limit.observe(ok(in_use=1, waiting=0, first_token_s=0.5))
    clock.now = 200.0
    limit.observe(ok(in_use=8, first_token_s=4.0, started=190.0))
    assert limit.value == 4
    # Another call of the same crowd, started before that decrease: no second decrease.
    limit.observe(ok(in_use=4, first_token_s=5.0, started=195.0))
    assert limit.value == 4
    limit.observe(ok(in_use=4, first_token_s=5.0, started=201.0))
    assert limit.value == 2


def test_first_tokens_that_vary_a_little_are_not_an_overload() -> None:
    limit = AdaptiveLimit(8)
    for first_token_s in [0.4, 0.9, 0.6, 1.5, 0.5, 1.8, 0.7]:
        limit.observe(ok(in_use=8, first_token_s=first_token_s))
    assert limit.value == 8


def test_a_fixed_limit_never_changes() -> None:
    limit = AdaptiveLimit(4, adaptive=False)
    limit.observe(cut(in_use=4))
    assert limit.value == 4


def test_every_change_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="crossroads")
    limit = AdaptiveLimit(4)
    limit.observe(cut(in_use=4, outcome="rate_limited"))
    limit.observe(ok(in_use=2))
    limit.observe(ok(in_use=2))
    changes = [r for r in caplog.records if r.getMessage() == "Model concurrency limit changed"]
    fields = [r.fields for r in changes]  # type: ignore[attr-defined]
    assert [(f["old"], f["new"], f["why"]) for f in fields] == [
        (4, 2, "rate_limited"),
        (2, 3, "coping"),
    ]
    assert changes[0].levelno == logging.WARNING and changes[1].levelno == logging.INFO


class SharedValue:
    """Stands in for a shared store (a Redis key): several processes, one value."""

    def __init__(self, value: int) -> None:
        self.value = value
        self.updates = 0

    def read(self) -> int:
        return self.value

    def update(self, change: Callable[[int], int]) -> tuple[int, int]:
        self.updates += 1
        old = self.value
        self.value = change(old)
        return old, self.value


def test_processes_sharing_a_store_learn_one_limit() -> None:
    shared = SharedValue(8)
    first, second = AdaptiveLimit(8, store=shared), AdaptiveLimit(8, store=shared)
    first.observe(cut(in_use=8))
    assert first.value == second.value == 4
    second.observe(cut(in_use=4))
    assert first.value == second.value == 2
    assert shared.updates == 2


def test_the_embedded_store_is_one_number() -> None:
    store = InProcessLimit(3)
    assert store.update(lambda value: value + 1) == (3, 4)
    assert store.read() == 4
