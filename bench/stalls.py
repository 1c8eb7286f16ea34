"""`python -m bench.stalls OUT run.py ARGS...`: run the app with an event-loop stall probe.

A task on the app's loop ticks every 20 ms; a thread watches the ticks. When the loop has not
ticked for `STALL_S`, the thread takes the main thread's stack: what kept the loop busy (one
long synchronous piece of work shows as the same stack every time). At exit, OUT gets the
loop's lateness per tick (how late each 20 ms sleep woke) and the stacks seen during stalls.
A bench diagnostic (`BENCH_STALLS=DIR`), not part of the app.
"""

from __future__ import annotations

import asyncio
import collections
import json
import runpy
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import uvicorn

TICK_S = 0.02
STALL_S = 0.2
LATE_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Probe:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.last_tick = time.monotonic()
        self.lateness: collections.Counter[str] = collections.Counter()
        self.worst: list[tuple[float, float]] = []  # (lateness s, at monotonic)
        self.stacks: collections.Counter[str] = collections.Counter()
        self.main = threading.main_thread().ident
        self.started = time.monotonic()

    async def ticker(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(TICK_S)
            now = time.monotonic()
            late = now - before - TICK_S
            self.last_tick = now
            bucket = next((f"<{b}" for b in LATE_BUCKETS if late < b), f">={LATE_BUCKETS[-1]}")
            self.lateness[bucket] += 1
            if late > 0.1:
                self.worst.append((late, now - self.started))

    def watch(self) -> None:
        written = time.monotonic()
        while True:
            time.sleep(STALL_S / 2)
            if time.monotonic() - written > 1.0:
                # uvicorn ends on the signal it caught, past atexit: write as we go.
                self.write()
                written = time.monotonic()
            if time.monotonic() - self.last_tick > STALL_S:
                frame = sys._current_frames().get(self.main or 0)
                if frame is not None:
                    stack = "".join(traceback.format_stack(frame, limit=25))
                    self.stacks[stack] += 1

    def write(self) -> None:
        document: dict[str, Any] = {
            "tick_s": TICK_S,
            "lateness": dict(self.lateness),
            "worst": sorted(self.worst, reverse=True)[:50],
            "stall_stacks": [
                {"samples": count, "stack": stack} for stack, count in self.stacks.most_common(30)
            ],
        }
        self.out.write_text(json.dumps(document, indent=1))


def main() -> None:
    out = Path(sys.argv[1])
    probe = Probe(out)
    startup = uvicorn.Server.startup

    async def started(self: uvicorn.Server, sockets: Any = None) -> None:
        await startup(self, sockets)
        probe.task = asyncio.get_running_loop().create_task(probe.ticker())  # type: ignore[attr-defined]
        threading.Thread(target=probe.watch, name="stall-probe", daemon=True).start()

    uvicorn.Server.startup = started  # type: ignore[method-assign]
    sys.argv = sys.argv[2:]
    runpy.run_path(sys.argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
