"""xdist's side of tests/parallel.py: the scheduler that makes the serial modules one unit."""

from __future__ import annotations

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadFileScheduling
from xdist.workermanage import WorkerController

from tests.parallel import SERIAL_UNIT, scope


class SerialUnitScheduling(LoadFileScheduling):
    """loadfile, with every serial module in one unit of work, handed out first."""

    def __init__(self, config: pytest.Config, log: Producer | None = None) -> None:
        super().__init__(config, log)
        self._root = config.rootpath

    def _split_scope(self, nodeid: str) -> str:
        return scope(self._root, nodeid)

    def _assign_work_unit(self, node: WorkerController) -> None:
        if SERIAL_UNIT in self.workqueue:
            self.workqueue.move_to_end(SERIAL_UNIT, last=False)
        super()._assign_work_unit(node)
