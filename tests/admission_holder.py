"""A model call for the admission tests: takes a slot, records its places in line, leaves when told."""

from __future__ import annotations

import anyio

from server.admission import Admission, NotAdmitted


class Holder:
    """A task that takes a slot, records where it stood in the queue, and leaves when told."""

    def __init__(self, admission: Admission, name: str, log: list[str] | None = None) -> None:
        self.admission = admission
        self.name = name
        self.log = log if log is not None else []
        self.positions: list[int] = []
        self.queued = anyio.Event()
        self.entered = anyio.Event()
        self.leave = anyio.Event()
        self.ended = anyio.Event()
        self.refused: NotAdmitted | None = None
        self.scope = anyio.CancelScope()

    def _position(self, ahead: int) -> None:
        self.positions.append(ahead)
        self.queued.set()

    async def run(self) -> None:
        try:
            with self.scope:
                async with self.admission.slot(self._position):
                    self.log.append(self.name)
                    self.entered.set()
                    await self.leave.wait()
        except NotAdmitted as refused:
            self.refused = refused
        finally:
            self.ended.set()
