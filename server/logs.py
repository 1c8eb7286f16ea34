"""JSON-lines logging with the request, session and step of the current context."""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from contextvars import ContextVar
from typing import Any, TextIO

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
session_id: ContextVar[str | None] = ContextVar("session_id", default=None)
step: ContextVar[int | None] = ContextVar("step", default=None)

log = logging.getLogger("crossroads")

# Read once: the machine's name does not change while a process runs.
HOST = socket.gethostname()
# Other libraries' records (asyncio, psycopg's pool, redis, httpx, uvicorn) are shown from
# warning up: below that they are chatter (httpx logs every request to the model at info).
LIBRARY_LEVEL = logging.WARNING


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
        if record.name != log.name:
            line["logger"] = record.name  # whose line it is, when not ours
        line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def event(level: int, name: str, /, **fields: Any) -> None:
    """Log one event with its own figures; the context is captured now, not when formatted."""
    context = {"request_id": request_id.get(), "session_id": session_id.get(), "step": step.get()}
    log.log(level, name, extra={"fields": {**context, **fields}})


class JsonHandler(logging.StreamHandler[TextIO]):
    """The one handler of a process: every record it gets becomes one JSON line."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.setFormatter(JsonFormatter())


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every record of this process to stderr as JSON lines, so an operator's pipeline
    reads one format: ours from `level`, other libraries' from warning (or `level` if higher),
    and warnings too. uvicorn's access log stays as its config chose: `access_log=False` cuts its
    logger off from the root, so nothing is logged; on, each request is a JSON line."""
    handler = JsonHandler(sys.stderr if stream is None else stream)
    root = logging.getLogger()
    # Only a handler of ours is replaced (configure may run twice in one process).
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, JsonHandler)] + [handler]
    threshold = logging.getLevelNamesMapping()[level.upper()]
    root.setLevel(max(threshold, LIBRARY_LEVEL))
    for name in (log.name, "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.setLevel(threshold)
        logger.propagate = True
    # Python's warnings (a DeprecationWarning in a library) otherwise print plain text.
    logging.captureWarnings(True)
