"""The model interface every step writes through (text deltas, failures by reason, deadlines)
and the built-in offline model that implements it without a network."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import ClassVar, Protocol

import anyio

from server.generators.journey import Prompt
from server.generators.offline import OfflineWriter
from server.reasons import FailureReason
from server.settings import Settings
from server.watch import UNWATCHED, Watcher


@dataclass(frozen=True)
class Delta:
    """A piece of text; the last one of a stream carries the finish reason."""

    text: str
    finish_reason: str | None = None


class ModelError(Exception):
    """A model call that failed; `reason` says which deadline or fault, for the log and the fallback."""

    reason: ClassVar[FailureReason] = "model_error"

    def __init__(self, detail: str, *, attempts: int = 1) -> None:
        super().__init__(detail)
        self.detail = detail
        self.attempts = attempts


class FirstTokenTimeout(ModelError):
    reason = "first_token_timeout"


class ChunkTimeout(ModelError):
    reason = "chunk_timeout"


class StepTimeout(ModelError):
    reason = "step_timeout"


class RateLimited(ModelError):
    reason = "rate_limited"


class UpstreamStatus(ModelError):
    reason = "upstream_status"


class ConnectionFailed(ModelError):
    reason = "connection_error"


class MalformedChunk(ModelError):
    reason = "malformed_chunk"


class IncompleteStream(ModelError):
    reason = "incomplete_stream"


class Model(Protocol):
    """Turns a prompt into an async stream of text deltas ending with a finish reason."""

    name: str
    live: bool

    def stream(
        self, prompt: Prompt, *, deadline: float, watcher: Watcher = UNWATCHED
    ) -> AsyncGenerator[Delta]: ...


@dataclass(frozen=True)
class Deadlines:
    first_token_s: float
    chunk_s: float
    max_attempts: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Deadlines:
        limits = settings.limits
        return cls(limits.first_token_timeout_s, limits.chunk_timeout_s, limits.max_attempts)


class OfflineModel:
    """The built-in model: composes from the bank, typed out at a pace when it is the configured model."""

    live = False
    name = "offline"

    def __init__(self, writer: OfflineWriter, *, chars_per_s: float | None) -> None:
        self.writer = writer
        self._chars_per_s = chars_per_s

    async def stream(
        self, prompt: Prompt, *, deadline: float, watcher: Watcher = UNWATCHED
    ) -> AsyncGenerator[Delta]:
        text = self.writer.write(prompt.journey, prompt.kind)
        if self._chars_per_s is None:
            yield Delta(text, "stop")
            return
        pieces = _words(text)
        for piece in pieces[:-1]:
            yield Delta(piece)
            # The deliberate typing pace of the offline model (a setting), the one sleep that paces output.
            await anyio.sleep(len(piece) / self._chars_per_s)
        yield Delta(pieces[-1], "stop")

    def at_once(self) -> OfflineModel:
        """The same writer without the typing pace: how it serves as a fallback."""
        return OfflineModel(self.writer, chars_per_s=None)


def _words(text: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for index, char in enumerate(text):
        if char in " \n" and index + 1 - start >= 3:
            pieces.append(text[start : index + 1])
            start = index + 1
    if start < len(text) or not pieces:
        pieces.append(text[start:])
    return pieces
