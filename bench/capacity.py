"""`python -m bench.capacity`: people at once against an upstream that serves one stream at a
time (as llama.cpp's server: a new request cuts the running one), with the learned concurrency
limit and with fixed ones. Prints a Markdown table: where each step's text came from, and the
longest a person waited for a step's first text.

Everything runs on 127.0.0.1: the app as `run.py` in a process of its own, the fake upstream
in a thread of this one.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from bench import procs
from server.settings import Settings, load
from server.store import open_store
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.visitor import Visitor

QUESTIONS = 3  # a journey: scenario, three questions, report


@dataclass
class Run:
    label: str
    people: int
    sources: Counter[str] = field(default_factory=Counter)
    waits: list[float] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)
    cut: int = 0
    limits: list[int] = field(default_factory=list)


@contextmanager
def upstream(url: str | None) -> Iterator[str]:
    """The real upstream at `url`, or the fake playing llama.cpp with a small model on two
    cores: first token in 0.3 s, then ~60 tokens/s, one stream at a time."""
    if url:
        yield url
        return
    fake = FakeUpstream(
        Script(chunks=[f"word{i} " for i in range(60)], first_delay_s=0.3, chunk_delay_s=1 / 60)
    )
    fake.one_at_a_time = True
    with serve(fake) as fake_url:
        yield fake_url


def overrides_for(
    data_dir: str, url: str, adaptive: bool, slots: int, model: str = "fake-model"
) -> dict[str, dict[str, Any]]:
    return {
        "storage": {"data_dir": data_dir},
        "llm": {"base_url": url, "model": model},
        "limits": {
            "max_concurrent_ai_requests": slots,
            "adaptive_concurrency": adaptive,
            "sessions_per_minute_per_client": 0,
            "answers_per_minute_per_client": 0,
        },
        "journey": {"questions_per_session": QUESTIONS},
        "stream": {"abandon_grace_s": 60.0},
    }


def settings_for(overrides: dict[str, dict[str, Any]]) -> Settings:
    return load(environ={}, overrides=overrides)


def flat(overrides: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        f"{section}.{key}": value
        for section, values in overrides.items()
        for key, value in values.items()
    }


LIMIT = re.compile(r"^crossroads_model_concurrency_limit (\S+)$", re.M)
CUT = re.compile(r'^crossroads_model_attempts_total\{outcome="incomplete_stream"\} (\S+)$', re.M)


async def person(base: str, rng: random.Random, think_s: tuple[float, float], run: Run) -> str:
    """One person: starts a journey, reads each step, thinks, answers, reads the report."""
    async with Visitor(base) as visitor:
        sid = await visitor.start(rng.choice(["finance", "career", "ethics", "family"]))
        for n in range(QUESTIONS + 2):
            opened = time.monotonic()
            stream = await visitor.stream(sid, n)
            shown = next(
                (
                    e.at
                    for e in stream.events
                    if (e.event in ("snapshot", "chunk") and e.data) or e.event == "done"
                ),
                stream.ended,
            )
            run.waits.append(shown - opened)
            if 1 <= n <= QUESTIONS:
                await anyio.sleep(rng.uniform(*think_s))
                await visitor.answer(sid, n, "I would talk to them first, then decide.")
        return sid


async def one_run(
    label: str,
    people: int,
    *,
    adaptive: bool,
    slots: int,
    think_s: tuple[float, float],
    real: str | None,
    model: str,
) -> Run:
    run = Run(label, people)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as data_dir, upstream(real) as url:
        overrides = overrides_for(data_dir, url, adaptive, slots, model)
        with procs.app(Path(data_dir), flat(overrides)) as (port, _pid):
            base = f"http://127.0.0.1:{port}"
            sids: list[str] = []

            async def go(index: int) -> None:
                await anyio.sleep(index * 0.05)  # "at once": within a fraction of a second
                sids.append(await person(base, rng, think_s, run))

            async def metrics() -> str:
                async with Visitor(base) as visitor:
                    return (await visitor.http.get("/metrics")).text

            async def watch_limit() -> None:
                while True:
                    found = LIMIT.search(await metrics())
                    if found:
                        run.limits.append(int(float(found.group(1))))
                    await anyio.sleep(0.25)

            with anyio.fail_after(600):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(watch_limit)
                    async with anyio.create_task_group() as crowd:
                        for index in range(people):
                            crowd.start_soon(go, index)
                    tg.cancel_scope.cancel()
            cut = CUT.search(await metrics())
            run.cut = int(float(cut.group(1))) if cut else 0
        store = await open_store(settings_for(overrides))
        try:
            for sid in sids:
                for step in await store.steps(sid):
                    run.sources[step.reason or step.source or "?"] += 1
                    run.attempts.append(step.attempts or 0)
        finally:
            await store.close()
    return run


def table(runs: list[Run], settings: Settings) -> str:
    bound = settings.limits.queue_timeout_s + settings.limits.first_token_timeout_s
    lines = [
        "| people | limit | steps | from the model | fell back (why) | streams cut "
        f"| longest wait | median wait | waits over {bound:g} s | limit seen |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        steps = sum(run.sources.values())
        model = run.sources.get("model", 0)
        others = ", ".join(f"{k} {v}" for k, v in sorted(run.sources.items()) if k != "model")
        over = sum(1 for wait in run.waits if wait > bound)
        seen = f"{min(run.limits)} to {max(run.limits)}" if run.limits else "?"
        lines.append(
            f"| {run.people} | {run.label} | {steps} | {model} ({model / steps:.0%}) "
            f"| {others or '0'} | {run.cut} | {max(run.waits):.1f} s "
            f"| {statistics.median(run.waits):.1f} s | {over} | {seen} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--people", default="4,12", help="comma-separated crowd sizes")
    parser.add_argument("--think", default="2,6", help="seconds a person thinks: min,max")
    parser.add_argument("--fixed", default="16,1", help="fixed limits to compare with")
    parser.add_argument("--upstream", help="a real OpenAI-compatible base URL instead of the fake")
    parser.add_argument("--model", default="fake-model", help="the model name to ask for")
    args = parser.parse_args()
    low, high = (float(x) for x in args.think.split(","))
    fixed_limits = [int(n) for n in args.fixed.split(",") if n]
    runs: list[Run] = []
    for people in (int(n) for n in args.people.split(",")):
        runs.append(
            anyio.run(
                lambda p=people: one_run(
                    "learned (max 16)",
                    p,
                    adaptive=True,
                    slots=16,
                    think_s=(low, high),
                    real=args.upstream,
                    model=args.model,
                )
            )
        )
        for fixed in fixed_limits:
            runs.append(
                anyio.run(
                    lambda p=people, f=fixed: one_run(
                        f"fixed {f}",
                        p,
                        adaptive=False,
                        slots=f,
                        think_s=(low, high),
                        real=args.upstream,
                        model=args.model,
                    )
                )
            )
        print(
            table(runs[-1 - len(fixed_limits) :], settings_for(overrides_for("", "", True, 16))),
            flush=True,
        )
    print()
    print(table(runs, settings_for(overrides_for("", "", True, 16))))


if __name__ == "__main__":
    main()
