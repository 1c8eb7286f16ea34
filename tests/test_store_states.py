"""Store.step_states on both backends: every step a distributed worker writes, checked at its
lease renewal in one read, however many there are."""

from __future__ import annotations

import pytest

from server.records import StepState
from server.store import Store

pytestmark = pytest.mark.anyio


async def test_the_states_of_many_steps_come_in_one_read_and_absent_ones_are_left_out(
    store: Store,
) -> None:
    sids = []
    for _ in range(410):  # more than one SQLite statement's slice
        session = await store.create_session(
            owner="o", category="finance", seed=1, questions_total=2
        )
        sids.append(session.id)
    generating = await store.begin_generation(sids[0], 0)
    await store.stop_step(sids[1], 0, "half")
    await store.delete_session(sids[2])
    keys = [(sid, 0) for sid in sids] + [(sids[0], 5)]  # a step never opened
    states = await store.step_states(keys)
    assert states[(sids[0], 0)] == StepState("generating", generating)
    assert states[(sids[1], 0)] == StepState("stopped", 0)
    assert (sids[2], 0) not in states and (sids[0], 5) not in states
    assert len(states) == 409
    assert all(states[(sid, 0)] == StepState("open", 0) for sid in sids[3:])
    assert await store.step_states([]) == {}
