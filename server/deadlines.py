"""Deadlines over a run of reads: between two reads, and for the whole run."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class ReadDeadline:
    """The between-chunk and whole-step deadlines over a run of reads, with one timer that is
    re-armed only when it fires (at most once per `chunk_s`), instead of a cancel scope and a
    timer per read: that per-read cost was a tenth of the app's CPU under load."""

    def __init__(self, chunk_s: float, deadline: float, clock: Callable[[], float]) -> None:
        self._chunk_s = chunk_s
        self._deadline = deadline
        self._clock = clock
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._handle: asyncio.TimerHandle | None = None
        self._read_started = 0.0
        self._reading = False
        self.expired: str | None = None  # "chunk" or "step" once a deadline fired

    def _due(self) -> float:
        return min(self._read_started + self._chunk_s, self._deadline)

    def _arm(self) -> None:
        self._handle = self._loop.call_later(max(0.0, self._due() - self._clock()), self._fire)

    def _fire(self) -> None:
        self._handle = None
        if not self._reading:
            return  # the next read arms it again
        if self._clock() < self._due():
            self._arm()  # reads happened since it was armed: wait for the current one's due
            return
        self.expired = "step" if self._deadline <= self._read_started + self._chunk_s else "chunk"
        if self._task is not None:
            self._task.cancel()

    async def read(self, receive: Callable[[], Awaitable[T]]) -> T | None:
        """The next read, or None with `expired` set when a deadline passed first."""
        self._read_started = self._clock()
        if self._clock() >= self._deadline:
            self.expired = "step"
            return None
        self._reading = True
        if self._handle is None:
            self._arm()
        try:
            return await receive()
        except asyncio.CancelledError:
            # Ours only if this timer fired and nobody else cancelled the task meanwhile.
            if self.expired is not None and self._task is not None and self._task.uncancel() == 0:
                return None
            self.expired = None
            raise
        finally:
            self._reading = False

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
