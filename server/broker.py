"""The generation broker: what the app asks of the generations it runs, whichever process
writes them. `streaming.Generations` is the embedded implementation (one process)."""

from __future__ import annotations

from typing import Protocol

from server.streaming import Generation, Key, Render, Visible, Work


class Broker(Protocol):
    """Single flight per (session, step): one generation writes a step, any number of viewers
    follow it (`streaming.follow` reads a Generation: the embedded one itself, or a local mirror
    of one written elsewhere). Every method but `streamed` is cheap
    and never blocks."""

    abandoned: int  # generations cancelled after their last viewer left (a metric)

    def start(
        self, key: Key, work: Work, *, visible: Visible = len, render: Render | None = None
    ) -> Generation:
        """The running generation of this step, or a new one running `work`: never two."""
        ...

    def get(self, key: Key) -> Generation | None:
        """The running generation of this step, if any."""
        ...

    def all(self) -> list[Generation]:
        """Every running generation (to stop a session's, or to shed under memory pressure)."""
        ...

    def viewers(self) -> int:
        """Open streams on running generations."""
        ...

    async def streamed(self, key: Key) -> str:
        """The text the step's running generation has written so far, wherever it runs ("" if
        none runs): what a stop keeps. The one method that may wait (on Redis)."""
        ...

    def __len__(self) -> int:
        """How many generations this process writes (a step written by another process and
        only followed here is not counted: summed over processes, each step counts once)."""
        ...

    def end(
        self, session_id: str, n: int, *, following: bool = False, deleted: bool = False
    ) -> None:
        """The store changed step n (and every later step, if `following`): stopped, rewound
        or deleted. Its generation ends wherever it runs; viewers get what the store holds.
        `deleted`: the session is gone, and whatever the broker keeps of it goes too."""
        ...

    def release_viewers(self) -> None:
        """The server is stopping: every stream sends a last status and ends."""
        ...
