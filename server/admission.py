"""The AI-request semaphore and its queue, with positions and a bounded wait."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio


class NotAdmitted(Exception):
    """No slot for this model call: the queue wait ran out, or admission is paused."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class _Waiter:
    on_position: Callable[[int], None]
    woken: anyio.Event = field(default_factory=anyio.Event)
    granted: bool = False
    refused: str | None = None


class Admission:
    """`slots` concurrent model calls; others wait in order, at most `queue_timeout_s`."""

    def __init__(self, slots: int, *, queue_timeout_s: float) -> None:
        self.slots = slots
        self.queue_timeout_s = queue_timeout_s
        self.in_use = 0
        self.paused_reason: str | None = None
        self._queue: list[_Waiter] = []

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @asynccontextmanager
    async def slot(
        self, on_position: Callable[[int], None] = lambda _: None
    ) -> AsyncIterator[None]:
        await self._acquire(on_position)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, on_position: Callable[[int], None]) -> None:
        if self.paused_reason is not None:
            raise NotAdmitted(self.paused_reason)
        if self.in_use < self.slots and not self._queue:
            self.in_use += 1
            return
        waiter = _Waiter(on_position)
        self._queue.append(waiter)
        on_position(len(self._queue) - 1)
        try:
            with anyio.move_on_after(self.queue_timeout_s):
                await waiter.woken.wait()
        except BaseException:
            self._leave(waiter)
            raise
        if waiter.refused is not None:
            raise NotAdmitted(waiter.refused)
        if not waiter.granted:
            self._leave(waiter)
            raise NotAdmitted("queue_timeout")

    def _leave(self, waiter: _Waiter) -> None:
        if waiter.granted:
            # The slot was handed over as the wait ended: give it back.
            self._release()
            return
        if waiter.refused is not None:
            return
        index = self._queue.index(waiter)
        del self._queue[index]
        for position, behind in enumerate(self._queue[index:], start=index):
            behind.on_position(position)

    def _release(self) -> None:
        if self._queue:
            # The slot passes straight to the next in line, so in_use stays the same.
            nxt = self._queue.pop(0)
            nxt.granted = True
            nxt.woken.set()
            for position, behind in enumerate(self._queue):
                behind.on_position(position)
        else:
            self.in_use -= 1

    def drain(self, reason: str) -> None:
        """Pause admission (memory pressure): waiters and new calls fall back."""
        self.paused_reason = reason
        waiting, self._queue = self._queue, []
        for waiter in waiting:
            waiter.refused = reason
            waiter.woken.set()

    def resume(self) -> None:
        self.paused_reason = None
