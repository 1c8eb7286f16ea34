"""A stream request is answered at once whatever the store is doing: `connecting` and heartbeats
while its reads wait (a database busy with other work), then the text, exact on a resume, when
they answer; a refusal decided late is the stream's last event (server/opening.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.to_thread
import pytest

from server.app import create_app
from server.opening import CONNECTING, NOT_OPENED
from server.services import Services
from server.settings import Settings
from server.store import Session, Step, Store, Unavailable
from server.viewing import DATABASE_AWAY
from tests.conftest import SettingsFactory
from tests.servers import serve_app
from tests.sse import Received, Stream
from tests.visitor import Visitor

# The store's reads and the broker's single flight differ between the backends: both.
pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

HEARTBEAT_S = 1.0
ENDS_S = 30.0  # a generous bound: every stream here ends well within it


class Gate:
    """Shut, the store's reads wait (as behind a pool busy with other work); opened, they go
    on, or fail as a database that went away does. Set from the test's thread, waited for on
    the app's."""

    def __init__(self) -> None:
        self._open = threading.Event()
        self._open.set()
        self.fail = False
        self.held = 0  # reads that found the gate shut

    def shut(self) -> None:
        self._open.clear()

    def open(self, *, fail: bool = False) -> None:
        self.fail = fail
        self._open.set()

    @property
    def is_shut(self) -> bool:
        return not self._open.is_set()

    async def passed(self) -> None:
        if self.is_shut:
            self.held += 1
            # On a thread of the app's: the gate is opened from the test's own.
            await anyio.to_thread.run_sync(self._open.wait, abandon_on_cancel=True)
        if self.fail:
            raise Unavailable("connection refused")


class GatedStore:
    """The app's store; the reads a stream request makes before it can stream (the session,
    a step) pass the gate first."""

    def __init__(self, store: Store, gate: Gate) -> None:
        self._store = store
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def session(self, session_id: str) -> Session | None:
        await self._gate.passed()
        return await self._store.session(session_id)

    async def step(self, session_id: str, n: int) -> Step | None:
        await self._gate.passed()
        return await self._store.step(session_id, n)


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(
        # A scenario takes seconds to write, so a viewer can come back while it is written;
        # a generation left alone keeps going long after the gate opens again.
        offline={"chars_per_s": 150.0},
        stream={"heartbeat_s": HEARTBEAT_S, "abandon_grace_s": 20.0},
    )


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[str, Gate]]:
    app = create_app(settings)
    with serve_app(app) as url:
        svc: Services = app.state.services
        gate = Gate()
        gated: Any = GatedStore(svc.store, gate)
        svc.store = gated
        svc.journeys.store = gated
        yield url, gate


class OpenAfterAHeartbeat:
    """For sse.read's `until`: while the gate is shut, wait for the stream's first event and a
    heartbeat (both sent with no answer from the store), then open it and read on."""

    def __init__(self, gate: Gate, *, fail: bool = False) -> None:
        self.gate = gate
        self.fail = fail
        self.before_open: list[Received] = []

    def __call__(self, stream: Stream) -> bool:
        if self.gate.is_shut and stream.events and stream.heartbeats:
            self.before_open = list(stream.events)
            self.gate.open(fail=self.fail)
        return False


async def test_a_stream_starts_while_the_store_does_not_answer(
    served: tuple[str, Gate],
) -> None:
    url, gate = served
    async with Visitor(url) as visitor:
        sid = await visitor.start()
        with anyio.fail_after(ENDS_S):
            first = await visitor.stream(sid, 0)
            assert first.names()[-1] == "done"
            gate.shut()
            opener = OpenAfterAHeartbeat(gate)
            again = await visitor.stream(sid, 0, until=opener)
    assert gate.held >= 1
    assert again.status == 200
    # Status and a heartbeat went out while the store was held; the text came after it.
    assert [(e.event, e.data) for e in opener.before_open] == [("status", CONNECTING)]
    assert again.names() == ["status", "status", "snapshot", "done"]
    assert again.text() == first.text() and 'id="step-0"' in again.of("done")[0].data
    assert again.largest_gap() <= HEARTBEAT_S + 1.0, again.largest_gap()


async def test_a_resume_while_the_store_does_not_answer_gets_exactly_the_missing_text(
    served: tuple[str, Gate],
) -> None:
    url, gate = served
    async with Visitor(url) as visitor:
        sid = await visitor.start()
        with anyio.fail_after(ENDS_S):
            part = await visitor.stream(sid, 0, until=lambda s: len(s.of("chunk")) >= 2)
            last_id = [e.id for e in part.events if e.id][-1]
            gate.shut()
            opener = OpenAfterAHeartbeat(gate)
            rest = await visitor.stream(sid, 0, last_event_id=last_id, until=opener)
            whole = await visitor.stream(sid, 0)
    assert gate.held >= 1
    assert [e.data for e in opener.before_open] == [CONNECTING]
    assert "snapshot" not in rest.names() and rest.names()[-1] == "done"
    assert rest.text(part.text()) == whole.text()


async def test_a_refusal_decided_late_is_the_last_event_and_in_time_a_404(
    served: tuple[str, Gate],
) -> None:
    url, gate = served
    async with Visitor(url) as owner, Visitor(url) as stranger:
        sid = await owner.start()
        await stranger.home()
        with anyio.fail_after(ENDS_S):
            gate.shut()
            late = await stranger.stream(sid, 0, until=OpenAfterAHeartbeat(gate))
            in_time = await stranger.stream(sid, 0)
            gate.shut()
            missing_late = await owner.stream(sid, 99, until=OpenAfterAHeartbeat(gate))
            # A step number that is no number is refused before the store is asked.
            gate.shut()
            bad = await owner.http.get(f"/s/{sid}/steps/x/stream")
            gate.open()
    assert late.status == 200
    assert [(e.event, e.data) for e in late.events] == [
        ("status", CONNECTING),
        ("status", NOT_OPENED),
    ]
    assert in_time.status == 404
    assert [e.data for e in missing_late.events] == [CONNECTING, NOT_OPENED]
    assert bad.status_code == 404


async def test_a_database_gone_while_the_stream_opens_is_its_last_event(
    served: tuple[str, Gate],
) -> None:
    url, gate = served
    async with Visitor(url) as visitor:
        sid = await visitor.start()
        with anyio.fail_after(ENDS_S):
            gate.shut()
            away = await visitor.stream(sid, 0, until=OpenAfterAHeartbeat(gate, fail=True))
            refused = await visitor.stream(sid, 0)
            gate.open()
            back = await visitor.stream(sid, 0)
    assert away.status == 200
    assert [(e.event, e.data) for e in away.events] == [
        ("status", CONNECTING),
        ("status", DATABASE_AWAY),
    ]
    # Decided in time, the same failure is the request's 503; once it answers, the text.
    assert refused.status == 503
    assert back.names()[-1] == "done"
