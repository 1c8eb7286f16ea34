"""The AI-request semaphore and its queue, with positions and a bounded wait."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio

from server.reasons import FailureReason


class NotAdmitted(Exception):
    """No slot for this model call: the queue wait ran out, or admission is paused."""

    def __init__(self, reason: FailureReason) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(eq=False)
class _Waiter:
    on_position: Callable[[int], None]
    woken: anyio.Event = field(default_factory=anyio.Event)
    granted: bool = False
    refused: FailureReason | None = None
    position: int = -1


class Admission:
    """`slots` concurrent model calls; others wait in order, at most `queue_timeout_s`."""

    def __init__(self, slots: int, *, queue_timeout_s: float) -> None:
        self.slots = slots
        self.queue_timeout_s = queue_timeout_s
        self.in_use = 0
        self.paused_reason: FailureReason | None = None
        self._queue: list[_Waiter] = []
        self._renumber_pending = False

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
        waiter = _Waiter(on_position, position=len(self._queue))
        self._queue.append(waiter)
        on_position(waiter.position)
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
        self._queue.remove(waiter)
        self._renumber_soon()

    def _release(self) -> None:
        if self._queue:
            # The slot passes straight to the next in line, so in_use stays the same.
            nxt = self._queue.pop(0)
            nxt.granted = True
            nxt.woken.set()
            self._renumber_soon()
        else:
            self.in_use -= 1

    def _renumber_soon(self) -> None:
        """Tell waiters their new places once per turn of the event loop: when a crowd times
        out together, each waiter hears once, not once per departure ahead of it."""
        if not self._renumber_pending:
            self._renumber_pending = True
            asyncio.get_running_loop().call_soon(self._renumber)

    def _renumber(self) -> None:
        self._renumber_pending = False
        for position, waiter in enumerate(self._queue):
            if waiter.position != position:
                waiter.position = position
                waiter.on_position(position)

    def drain(self, reason: FailureReason) -> None:
        """Pause admission (memory pressure): waiters and new calls fall back."""
        self.paused_reason = reason
        waiting, self._queue = self._queue, []
        for waiter in waiting:
            waiter.refused = reason
            waiter.woken.set()

    def resume(self) -> None:
        self.paused_reason = None
