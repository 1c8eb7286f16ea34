"""The AI-request semaphore and its queue, with positions and a bounded wait; its size is learned."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Protocol

import anyio

from server.capacity import AdaptiveLimit, Sample
from server.reasons import FailureReason


class NotAdmitted(Exception):
    """No slot for this model call: the queue wait ran out, or admission is paused."""

    def __init__(self, reason: FailureReason) -> None:
        super().__init__(reason)
        self.reason = reason


class HeldSlot(Protocol):
    """What a model call does with the slot it holds: step back between attempts when the
    learned limit fell below the calls running."""

    async def recheck(self) -> bool: ...


class ModelAdmission(Protocol):
    """What the rest of the app sees of admission: this module's Admission (one process), or
    admission_redis.RedisAdmission (one budget and one queue for every worker)."""

    limit: AdaptiveLimit

    @property
    def slots(self) -> int: ...

    @property
    def in_use(self) -> int: ...

    @property
    def waiting(self) -> int: ...

    @property
    def read_at(self) -> float:
        """When in_use, waiting and slots were last read where they are kept (wall-clock
        seconds; 0 before the first reading), so /metrics can tell a fresh reading from an old
        one when several workers report the same deployment values."""
        ...

    def slot(
        self, on_position: Callable[[int], None] = ...
    ) -> AbstractAsyncContextManager[HeldSlot]: ...

    def observe(self, outcome: str, *, started: float, first_token_s: float | None) -> None: ...

    @property
    def refusing(self) -> FailureReason | None:
        """Why new model calls are refused now (their steps fall back), None while admitted."""
        ...

    async def refresh(self) -> None:
        """Read in_use, waiting and slots anew where they are kept (before a scrape)."""
        ...

    def drain(self, reason: FailureReason) -> None: ...

    def resume(self) -> None: ...


@dataclass(eq=False)
class _Waiter:
    on_position: Callable[[int], None]
    woken: anyio.Event = field(default_factory=anyio.Event)
    granted: bool = False
    refused: FailureReason | None = None
    position: int = -1
    returning: bool = False  # stepped back from a slot it held: waits ahead of newcomers


class Slot:
    """A slot held by one model call, from the start of its first attempt to its end."""

    def __init__(self, admission: Admission, on_position: Callable[[int], None]) -> None:
        self._admission = admission
        self._on_position = on_position
        self.held = False

    async def recheck(self) -> bool:
        """Between two attempts: when the learned limit fell below the calls holding a slot,
        give this one back and wait again at the head of the line. Return whether it waited."""
        admission = self._admission
        if admission.in_use <= admission.slots:
            return False
        self.held = False
        admission._release()
        await admission._acquire(self._on_position, front=True)
        self.held = True
        return True


class Admission:
    """`limit.value` concurrent model calls (learned, or fixed when given a number); others
    wait in order, at most `queue_timeout_s`."""

    def __init__(self, limit: int | AdaptiveLimit, *, queue_timeout_s: float) -> None:
        self.limit = (
            limit if isinstance(limit, AdaptiveLimit) else AdaptiveLimit(limit, adaptive=False)
        )
        self.queue_timeout_s = queue_timeout_s
        self.in_use = 0
        self.paused_reason: FailureReason | None = None
        self._queue: list[_Waiter] = []
        self._renumber_pending = False

    @property
    def slots(self) -> int:
        """Calls admitted at once now: the learned limit."""
        return self.limit.value

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def read_at(self) -> float:
        return time.time()  # its figures are its own: always current

    @asynccontextmanager
    async def slot(
        self, on_position: Callable[[int], None] = lambda _: None
    ) -> AsyncIterator[Slot]:
        held = Slot(self, on_position)
        await self._acquire(on_position)
        held.held = True
        try:
            yield held
        finally:
            if held.held:
                self._release()

    def observe(self, outcome: str, *, started: float, first_token_s: float | None) -> None:
        """Learn from how one model call attempt ended; a raised limit admits waiters at once."""
        before = self.slots
        sample = Sample(outcome, started, first_token_s, self.in_use, self.waiting)
        if self.limit.observe(sample):
            self._fill()
        if self.slots != before:
            # The queue text says how many calls the model takes at once: say it again.
            for waiter in self._queue:
                waiter.on_position(waiter.position)

    async def _acquire(self, on_position: Callable[[int], None], *, front: bool = False) -> None:
        if self.paused_reason is not None:
            raise NotAdmitted(self.paused_reason)
        if self.in_use < self.slots and not self._queue:
            self.in_use += 1
            return
        # Those who step back keep their order among themselves, ahead of everyone else.
        ahead = sum(1 for waiter in self._queue if waiter.returning) if front else self.waiting
        waiter = _Waiter(on_position, position=ahead, returning=front)
        self._queue.insert(waiter.position, waiter)
        on_position(waiter.position)
        if front:
            self._renumber_soon()
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
        self.in_use -= 1
        self._fill()

    def _fill(self) -> None:
        """Hand free slots to the next in line (none while the limit is below the calls
        running); the limit is read afresh each time, so a shared one can change elsewhere."""
        if self.paused_reason is not None:
            return
        granted = False
        while self._queue and self.in_use < self.slots:
            nxt = self._queue.pop(0)
            nxt.granted = True
            nxt.woken.set()
            self.in_use += 1
            granted = True
        if granted:
            self._renumber_soon()

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

    @property
    def refusing(self) -> FailureReason | None:
        return self.paused_reason

    async def refresh(self) -> None:
        """Nothing to read: this process's own counts are always current."""

    def drain(self, reason: FailureReason) -> None:
        """Pause admission (memory pressure): waiters and new calls fall back."""
        self.paused_reason = reason
        waiting, self._queue = self._queue, []
        for waiter in waiting:
            waiter.refused = reason
            waiter.woken.set()

    def resume(self) -> None:
        self.paused_reason = None
