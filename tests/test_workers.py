"""Several workers on one machine: what tells them apart, and run.py supervising them."""

from __future__ import annotations

import json
import logging
import os
import socket

from server.logs import JsonFormatter


def test_a_log_line_names_its_host_and_process() -> None:
    record = logging.LogRecord("crossroads", logging.INFO, __file__, 1, "Something", None, None)
    line = json.loads(JsonFormatter().format(record))
    assert line["worker"] == f"{socket.gethostname()}:{os.getpid()}"
