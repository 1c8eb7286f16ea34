"""What the app stored, read through a Store of the test's own, as an operator's check would."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import TypedDict, TypeVar

import anyio

from server.backends import open_backends
from server.settings import Settings
from server.store import Session, Step, Store, open_store

T = TypeVar("T")


class Stored(TypedDict):
    sessions: list[Session]
    steps: list[Step]
    answers: list[tuple[int, str]]


def run(settings: Settings, read: Callable[[Store], Awaitable[T]]) -> T:
    """A read of the app's database through a store of the test's own."""

    async def main() -> T:
        # A second store on the app's database (the app keeps its own open meanwhile).
        store = await open_store(settings)
        try:
            return await read(store)
        finally:
            await store.close()

    return on_a_thread(main)


def on_a_thread(main: Callable[[], Awaitable[T]]) -> T:
    """Run `main` in an event loop on a thread of its own, so that sync tests (the browser's)
    and async ones (whose loop is busy awaiting this) alike can call it."""
    result: list[T] = []
    failure: list[BaseException] = []

    async def keep() -> None:
        result.append(await main())

    def target() -> None:
        try:
            anyio.run(keep)
        except BaseException as exc:  # re-raised on the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=target, name="stored-read")
    thread.start()
    thread.join(30)
    if thread.is_alive():
        raise TimeoutError("a read of the store did not end")
    if failure:
        raise failure[0]
    return result[0]


def stored(settings: Settings, sid: str) -> Stored:
    """Everything stored about one session: its row, its steps and its answers."""

    async def read(store: Store) -> Stored:
        session = await store.session(sid)
        answers = await store.answers(sid)
        return {
            "sessions": [session] if session else [],
            "steps": list(await store.steps(sid)),
            "answers": list(answers.items()),
        }

    return run(settings, read)


def session(settings: Settings, sid: str) -> Session | None:
    return run(settings, lambda store: store.session(sid))


def step(settings: Settings, sid: str, n: int) -> Step | None:
    return run(settings, lambda store: store.step(sid, n))


def step_status(settings: Settings, sid: str, n: int) -> str | None:
    found = step(settings, sid, n)
    return found.status if found else None


def counts(settings: Settings) -> dict[str, int]:
    return run(settings, lambda store: store.counts())


def intact(settings: Settings) -> bool:
    return run(settings, lambda store: store.intact())


def interrupt(settings: Settings, sid: str, n: int) -> int:
    """Leave step n as a process that died while writing it would; its new version."""
    return run(settings, lambda store: store.interrupt(sid, n))


def cached_for(settings: Settings, sid: str) -> int:
    """Response-cache entries kept for the session."""

    async def main() -> int:
        # The cache the app's settings choose: diskcache in its data dir, or its Redis.
        backends = await open_backends(settings)
        try:
            return await backends.cache.entries_of(sid)
        finally:
            await backends.close()

    return on_a_thread(main)
