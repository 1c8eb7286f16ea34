"""The SSE events a step's stream is made of, encoded once for every viewer, and their ids
(`<version>.<offset>`, what a reconnecting browser resumes from)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

_LINES = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Event:
    """One SSE event: `status`, `snapshot`, `chunk`, `blocks` or `done`; only the text events
    (snapshot, chunk) carry an id."""

    event: str
    data: str
    id: str | None = None

    @cached_property
    def encoded(self) -> bytes:
        """The event on the wire (sse-starlette's framing), built once however many viewers
        send it: a generation hands the same text event to every viewer at the same offset."""
        head = (
            f"id: {self.id}\r\nevent: {self.event}\r\n" if self.id else f"event: {self.event}\r\n"
        )
        lines = "".join(f"data: {line}\r\n" for line in _LINES.split(self.data))
        return f"{head}{lines}\r\n".encode()


def event_id(version: int, offset: int) -> str:
    return f"{version}.{offset}"


def parse_event_id(value: str | None) -> tuple[int, int] | None:
    """`<version>.<offset>`; anything malformed or negative is treated as absent."""
    if not value:
        return None
    version, dot, offset = value.strip().partition(".")
    if not dot or not (version + offset).isascii() or not version.isdigit() or not offset.isdigit():
        return None
    return int(version), int(offset)
