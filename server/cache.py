"""The response cache of model-written steps and the per-category scenario pool: the interface,
and the request keys both backends share."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Protocol

from server.generators.journey import Prompt

POOL_SIZE = 24
REFRESH_ONE_IN = 8
_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)


def normalize(text: str) -> str:
    """Case, whitespace and punctuation do not make two requests different."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_PUNCTUATION.sub(" ", folded).split())


def request_key(prompt: Prompt, model: str, session_id: str) -> str:
    """The session and the whole normalized request: every message, the model and the token
    cap. Cached steps are the session's own (a regeneration, a restart); another visitor who
    got the same pooled scenario and clicked the same reply must get their own questions.
    Scenarios are shared only through the pool."""
    parts = [session_id, model, prompt.kind, str(prompt.max_tokens)]
    parts += [f"{m['role']}:{normalize(m['content'])}" for m in prompt.messages]
    digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
    return f"response:{digest}"


class ResponseCache(Protocol):
    """Completed model-written steps by request, and completed scenarios by category, on any
    backend. Every entry belongs to a session (`tag`), so deleting a journey removes its
    entries; entries expire. A failing backend raises: callers treat that as a miss."""

    hits: int
    misses: int

    async def get(self, key: str) -> str | None:
        """The cached text (counted as a hit or a miss)."""
        ...

    async def recent(self, key: str) -> str | None:
        """The cheapest look at what was stored lately under `key` (a fallback's cache tier):
        never raises, counts nothing."""
        ...

    async def put(self, key: str, text: str, *, tag: str, expire_s: float | None = None) -> None:
        """`tag` is the session id, so a session's entries can be forgotten with it; entries
        keyed on a person's answers expire with their session."""
        ...

    async def add_to_pool(self, category: str, session_id: str, text: str) -> None:
        """Keep the scenario for other sessions' fallbacks: at most POOL_SIZE per category, one
        per session; once full, only one scenario in REFRESH_ONE_IN replaces the oldest."""
        ...

    async def from_pool(self, category: str, session_id: str) -> str | None:
        """A completed scenario of this category written for another session."""
        ...

    async def forget(self, session_id: str, category: str) -> int:
        """Drop a session's cached entries and its pool scenario (a deleted journey); how many."""
        ...

    async def entries_of(self, session_id: str) -> int:
        """How many cached responses the session's steps left (operators' checks, tests)."""
        ...

    def trim(self) -> None:
        """Let go of what memory holds for speed (memory pressure); the backend keeps it all."""
        ...

    async def ping(self) -> bool:
        """Whether the cache answers (readiness)."""
        ...

    async def close(self) -> None: ...
