"""One long-lived thread that runs blocking calls one after another, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")
# The most calls whose results wait for one wake-up of the event loop.
BATCH = 32

_Job = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]
_Settled = tuple["asyncio.Future[Any]", Any, BaseException | None]


class ThreadClosed(RuntimeError):
    """A call after `close`: nothing runs it any more."""


class SerialThread:
    """Runs each call on its own thread, in the order they came, and hands the result back.

    The store's and the cache's calls went through `anyio.to_thread.run_sync`, whose hand-over
    (a capacity limiter, a cancel scope, a worker picked from a pool, a condition notified per
    call) cost as much as a small SQLite statement: the hops were a seventh of the app's CPU
    under a burst of sessions (bench/RESULTS.md). Here a call is one put on a C queue, and the
    thread hands back every result it has when it runs out of work (or every BATCH calls), so a
    busy loop is woken once for many results.

    As with `to_thread.run_sync`, a caller that is cancelled still waits for its call to end:
    a transaction is never left with an unknown outcome."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    async def run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise ThreadClosed(f"{self._thread.name} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, future, loop))
        with anyio.CancelScope(shield=True):
            result = await future
        return result

    async def close(self, last: Callable[[], None] | None = None) -> None:
        """Run `last` (if given) after every call already handed over, then end the thread."""
        if self._closed:
            return
        try:
            if last is not None:
                await self.run(last)
        finally:
            self._closed = True
            self._jobs.put(None)

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            job = jobs.get()
            settled: list[tuple[asyncio.AbstractEventLoop, _Settled]] = []
            while job is not None:
                fn, future, loop = job
                try:
                    settled.append((loop, (future, fn(), None)))
                except BaseException as exc:
                    settled.append((loop, (future, None, exc)))
                if len(settled) >= BATCH:
                    break
                try:
                    job = jobs.get_nowait()
                except queue.Empty:
                    break
            _hand_back(settled)
            if job is None:
                return


def _hand_back(settled: list[tuple[asyncio.AbstractEventLoop, _Settled]]) -> None:
    by_loop: dict[asyncio.AbstractEventLoop, list[_Settled]] = {}
    for loop, outcome in settled:
        by_loop.setdefault(loop, []).append(outcome)
    for loop, outcomes in by_loop.items():
        # A closed loop raises RuntimeError: nobody waits for these results any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_settle, outcomes)


def _settle(outcomes: list[_Settled]) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)
