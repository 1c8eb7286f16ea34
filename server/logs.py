"""JSON-lines logging with the request, session and step of the current context."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from contextvars import ContextVar
from typing import Any

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
session_id: ContextVar[str | None] = ContextVar("session_id", default=None)
step: ContextVar[int | None] = ContextVar("step", default=None)

log = logging.getLogger("crossroads")

# Read once: the machine's name does not change while a process runs.
HOST = socket.gethostname()


def worker() -> str:
    """This process as an operator finds it: `host:pid`, the same on every line of one worker,
    matching `ps` and `kill` on that machine and distinct across machines. (uvicorn's supervisor
    gives its workers no index of their own; a restarted worker gets a new pid.)"""
    return f"{HOST}:{os.getpid()}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, worker, event, request_id, session_id, step, then
    figures."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", {}))
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "worker": worker(),
            "event": record.getMessage(),
            "request_id": fields.pop("request_id", request_id.get()),
            "session_id": fields.pop("session_id", session_id.get()),
            "step": fields.pop("step", step.get()),
        }
        line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def event(level: int, name: str, /, **fields: Any) -> None:
    """Log one event with its own figures; the context is captured now, not when formatted."""
    context = {"request_id": request_id.get(), "session_id": session_id.get(), "step": step.get()}
    log.log(level, name, extra={"fields": {**context, **fields}})


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("crossroads", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
