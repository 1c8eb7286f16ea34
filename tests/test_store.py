"""The Store interface on both backends: versions as fencing, conflicts, cascades, expiry,
commits visible before the call returns, and migrations that several workers may run at once."""

from __future__ import annotations

import time

import anyio
import pytest

from server import schema
from server.store import Conflict, Finished, Store
from tests.databases import Database

pytestmark = pytest.mark.anyio


async def new_session(store: Store, owner: str = "browser-1") -> str:
    session = await store.create_session(owner=owner, category="finance", seed=7, questions_total=2)
    return session.id


async def finish(
    store: Store, sid: str, n: int, text: str, open_next: tuple[int, str] | None
) -> None:
    version = await store.begin_generation(sid, n)
    record = Finished(text=text, source="offline", model="offline")
    await store.finish_step(sid, n, record, version=version, open_next=open_next)


async def test_creating_a_session_opens_its_scenario(store: Store) -> None:
    sid = await new_session(store)
    steps = await store.steps(sid)
    assert [(s.n, s.kind, s.status, s.version) for s in steps] == [(0, "scenario", "open", 0)]
    session = await store.session(sid)
    assert session is not None and session.report_step == 3
    assert session.share_id is None  # sharing is off until the owner asks for a link


async def test_every_generation_gets_a_new_version_that_survives_a_reopen(
    store: Store, database: Database
) -> None:
    sid = await new_session(store)
    assert await store.begin_generation(sid, 0) == 1
    assert await store.begin_generation(sid, 0) == 2  # regenerated after a restart
    assert await store.bump_version(sid, 0, 2) == 3  # fallback text replaced shown text
    await store.close()
    reopened = await database.open()
    try:
        step = await reopened.step(sid, 0)
        assert step is not None and step.version == 3 and step.status == "generating"
    finally:
        await reopened.close()


async def test_a_new_version_for_replaced_text_is_fenced_on_the_version_its_writer_saw(
    store: Store,
) -> None:
    sid = await new_session(store)
    old = await store.begin_generation(sid, 0)
    taken = await store.begin_generation(sid, 0)  # another worker took the step over
    # The old owner, paused meanwhile, replaces its shown text: refused, the version stays.
    with pytest.raises(Conflict):
        await store.bump_version(sid, 0, old)
    step = await store.step(sid, 0)
    assert step is not None and (step.status, step.version) == ("generating", taken)
    assert await store.bump_version(sid, 0, taken) == taken + 1
    await finish_fenced(store, sid, taken + 1)
    with pytest.raises(Conflict):  # a finished step's version moves no more
        await store.bump_version(sid, 0, taken + 1)


async def finish_fenced(store: Store, sid: str, version: int) -> None:
    record = Finished(text="Replaced.", source="offline", model="offline")
    await store.finish_step(sid, 0, record, version=version, open_next=None)


async def test_a_finished_step_opens_the_next_in_the_same_transaction(store: Store) -> None:
    sid = await new_session(store)
    await finish(store, sid, 0, "The scenario.", (1, "question"))
    steps = {s.n: s for s in await store.steps(sid)}
    assert steps[0].status == "done" and steps[0].text == "The scenario."
    assert steps[1].status == "open" and steps[1].kind == "question"
    with pytest.raises(Conflict):
        await store.begin_generation(sid, 0)  # done is done


async def test_answers_are_saved_once_and_only_to_an_asked_question(store: Store) -> None:
    sid = await new_session(store)
    await finish(store, sid, 0, "The scenario.", (1, "question"))
    with pytest.raises(Conflict):
        await store.save_answer(sid, 1, "too early", open_next=(2, "question"))  # not written yet
    await finish(store, sid, 1, "Question one?", None)
    await store.save_answer(sid, 1, "My answer", open_next=(2, "question"))
    with pytest.raises(Conflict):
        await store.save_answer(sid, 1, "again", open_next=(2, "question"))
    with pytest.raises(Conflict):
        await store.save_answer(sid, 0, "the scenario is not a question", open_next=(1, "question"))
    assert await store.answers(sid) == {1: "My answer"}
    assert (await store.step(sid, 2)) is not None


async def test_a_stopped_step_waits_until_it_is_asked_for_again(store: Store) -> None:
    sid = await new_session(store)
    version = await store.begin_generation(sid, 0)
    assert await store.stop_step(sid, 0)
    await store.release(sid, 0, version)  # the cancelled generation's cleanup must not reopen it
    record = Finished(text="late text", source="model", model="m")
    with pytest.raises(Conflict):  # nor may a generation that finished just as it was stopped
        await store.finish_step(sid, 0, record, version=version, open_next=(1, "question"))
    step = await store.step(sid, 0)
    assert step is not None and step.status == "stopped"
    assert await store.step(sid, 1) is None
    with pytest.raises(Conflict):
        await store.begin_generation(sid, 0)
    assert await store.reopen_step(sid, 0)
    newer = await store.begin_generation(sid, 0)
    assert newer == 2
    await store.release(sid, 0, version)  # the old generation's late cleanup leaves the new one be
    step = await store.step(sid, 0)
    assert step is not None and step.status == "generating"


async def test_deleting_a_session_removes_its_steps_and_answers(store: Store) -> None:
    sid = await new_session(store)
    other = await new_session(store, owner="browser-2")
    await finish(store, sid, 0, "The scenario.", (1, "question"))
    await finish(store, sid, 1, "Question one?", None)
    await store.save_answer(sid, 1, "My answer", open_next=(2, "question"))
    await store.delete_session(sid)
    assert await store.session(sid) is None
    assert await store.steps(sid) == []
    assert await store.answers(sid) == {}
    assert await store.session(other) is not None


async def test_old_sessions_expire_with_everything_they_hold(database: Database) -> None:
    now = time.time() - 31 * 86400
    store = await database.open(clock=lambda: now)
    try:
        old = await new_session(store)
        await finish(store, old, 0, "Old scenario.", (1, "question"))
        now = time.time()
        fresh = await new_session(store)
        assert await store.expire(30) == 1
        assert await store.session(old) is None
        assert await store.steps(old) == []
        assert await store.session(fresh) is not None
    finally:
        await store.close()


async def test_share_links_can_be_revoked_and_replaced(store: Store) -> None:
    sid = await new_session(store)
    await store.set_share(sid, "first-link")
    assert (await store.session_by_share("first-link")) is not None
    await store.set_share(sid, None)
    assert await store.session_by_share("first-link") is None
    await store.set_share(sid, "new-link")
    assert (await store.session_by_share("new-link")) is not None


async def test_the_owner_sees_their_sessions_newest_first(store: Store) -> None:
    first = await new_session(store)
    second = await new_session(store)
    await new_session(store, owner="someone-else")
    listed = await store.sessions_of("browser-1")
    assert [item.session.id for item in listed] == [second, first]


async def test_a_session_read_again_follows_its_share_link_and_deletion(store: Store) -> None:
    sid = await new_session(store)
    assert await store.session(sid) == await store.session(sid)
    await store.set_share(sid, "fresh-link")
    session = await store.session(sid)
    assert session is not None and session.share_id == "fresh-link"
    await store.delete_session(sid)
    assert await store.session(sid) is None


async def test_an_answer_is_committed_when_the_call_returns(
    store: Store, database: Database
) -> None:
    """What another worker reads the moment the response is sent: the answer and the next step."""
    sid = await new_session(store)
    await finish(store, sid, 0, "The scenario.", (1, "question"))
    await finish(store, sid, 1, "Question one?", None)
    await store.save_answer(sid, 1, "My answer", open_next=(2, "question"))
    elsewhere = await database.open()
    try:
        assert await elsewhere.answers(sid) == {1: "My answer"}
        step = await elsewhere.step(sid, 2)
        assert step is not None and step.status == "open"
    finally:
        await elsewhere.close()


async def test_a_generation_fenced_off_by_a_newer_one_changes_nothing(
    store: Store, database: Database
) -> None:
    """The old owner (paused, or on another worker) finishes after a takeover: Conflict, and the
    step keeps the newer generation's state."""
    sid = await new_session(store)
    old = await store.begin_generation(sid, 0)
    other = await database.open()
    try:
        newer = await other.begin_generation(sid, 0)  # the takeover, elsewhere
        assert newer == old + 1
        late = Finished(text="stale text", source="model", model="m")
        with pytest.raises(Conflict):
            await store.finish_step(sid, 0, late, version=old, open_next=(1, "question"))
        await store.release(sid, 0, old)
        await other.finish_step(
            sid, 0, Finished(text="fresh", source="model", model="m"), version=newer, open_next=None
        )
    finally:
        await other.close()
    step = await store.step(sid, 0)
    assert step is not None and (step.status, step.text, step.version) == ("done", "fresh", newer)


async def test_concurrent_generations_each_get_their_own_version(store: Store) -> None:
    sid = await new_session(store)
    versions: list[int] = []

    async def begin() -> None:
        versions.append(await store.begin_generation(sid, 0))

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(begin)
    assert sorted(versions) == [1, 2, 3, 4, 5]


async def test_a_step_finished_after_its_session_was_deleted_is_a_conflict(store: Store) -> None:
    sid = await new_session(store)
    version = await store.begin_generation(sid, 0)
    await store.delete_session(sid)
    record = Finished(text="too late", source="model", model="m")
    with pytest.raises(Conflict):
        await store.finish_step(sid, 0, record, version=version, open_next=(1, "question"))
    assert await store.steps(sid) == []


async def test_the_owners_list_counts_finished_steps_and_answers(store: Store) -> None:
    sid = await new_session(store)
    await finish(store, sid, 0, "The scenario.", (1, "question"))
    await finish(store, sid, 1, "Question one?", None)
    await store.save_answer(sid, 1, "My answer", open_next=(2, "question"))
    [item] = await store.sessions_of("browser-1")
    assert (item.session.id, item.done, item.answered) == (sid, 2, 1)


async def test_workers_starting_together_on_an_empty_database_all_migrate_it(
    database: Database,
) -> None:
    stores: list[Store] = []

    async def start() -> None:
        stores.append(await database.open())

    try:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(start)
        assert len(stores) == 4
        assert [await s.schema_version() for s in stores] == [schema.LATEST] * 4
        sid = await new_session(stores[0])
        assert await stores[3].step(sid, 0) is not None
    finally:
        for opened in stores:
            await opened.close()


async def test_counts_and_integrity_are_readable_from_a_second_store(
    store: Store, database: Database
) -> None:
    sid = await new_session(store)
    await finish(store, sid, 0, "The scenario.", (1, "question"))
    await finish(store, sid, 1, "Question one?", None)
    await store.save_answer(sid, 1, "My answer", open_next=(2, "question"))
    other = await database.open()
    try:
        assert await other.counts() == {"sessions": 1, "steps": 3, "answers": 1}
        assert await other.intact() is True
    finally:
        await other.close()


async def test_an_interrupted_step_is_generating_under_a_new_version(store: Store) -> None:
    sid = await new_session(store)
    await finish(store, sid, 0, "The scenario.", (1, "question"))
    done = await store.step(sid, 0)
    assert done is not None and done.status == "done"
    version = await store.interrupt(sid, 0)
    after = await store.step(sid, 0)
    assert after is not None and (after.status, after.version) == ("generating", version)
    assert version == done.version + 1
    # As after a crash: the next generation takes the step over.
    assert await store.begin_generation(sid, 0) == version + 1
    with pytest.raises(Conflict):
        await store.interrupt(sid, 7)


# Going back in a journey (change an answer, write a step again) and the journeys list.


async def answered_to_two(store: Store) -> str:
    """Scenario done, question 1 answered, question 2 done and answered, the report open."""
    sid = await new_session(store)
    await finish(store, sid, 0, "The scenario.", (1, "question"))
    await finish(store, sid, 1, "Question one?", None)
    await store.save_answer(sid, 1, "first", open_next=(2, "question"))
    await finish(store, sid, 2, "Question two?", None)
    await store.save_answer(sid, 2, "second", open_next=(3, "report"))
    return sid


async def test_a_changed_answer_clears_what_followed_and_opens_the_next_step_anew(
    store: Store,
) -> None:
    sid = await answered_to_two(store)
    before = max(step.version for step in await store.steps(sid))
    await store.rewind(sid, 1, answer="changed")
    assert await store.answers(sid) == {1: "changed"}
    steps = {step.n: step for step in await store.steps(sid)}
    assert sorted(steps) == [0, 1, 2]
    assert steps[1].text == "Question one?" and steps[2].status == "open"
    # The reopened step's versions start above any the removed steps had.
    assert await store.begin_generation(sid, 2) > before


async def test_a_step_written_again_opens_under_a_new_seed(store: Store) -> None:
    sid = await answered_to_two(store)
    await store.rewind(sid, 2, seed=99)
    steps = {step.n: step for step in await store.steps(sid)}
    assert sorted(steps) == [0, 1, 2]
    assert steps[2].status == "open" and steps[2].text == ""
    assert await store.answers(sid) == {1: "first"}
    session = await store.session(sid)
    assert session is not None and session.seed == 99


async def test_a_rewind_is_dated_by_the_stores_clock(database: Database) -> None:
    now = time.time() - 5 * 86400
    store = await database.open(clock=lambda: now)
    try:
        sid = await answered_to_two(store)
        now += 3600
        await store.rewind(sid, 1, answer="changed")
        session = await store.session(sid)
        assert session is not None and session.updated_at == pytest.approx(now)
    finally:
        await store.close()


async def test_rewinding_what_is_not_finished_or_not_answered_is_a_conflict(store: Store) -> None:
    sid = await new_session(store)
    with pytest.raises(Conflict):
        await store.rewind(sid, 0)  # the scenario is still open
    await finish(store, sid, 0, "The scenario.", (1, "question"))
    await finish(store, sid, 1, "Question one?", None)
    with pytest.raises(Conflict):
        await store.rewind(sid, 1, answer="never given before")
    assert await store.answers(sid) == {}
    with pytest.raises(Conflict):
        await store.rewind("no-such-session", 0)


async def test_a_stop_keeps_the_text_written_so_far(store: Store) -> None:
    sid = await new_session(store)
    await store.begin_generation(sid, 0)
    assert await store.stop_step(sid, 0, "You are standing at")
    step = await store.step(sid, 0)
    assert step is not None and step.status == "stopped" and step.text == "You are standing at"


async def test_the_journeys_list_carries_progress_and_the_scenario_opening(store: Store) -> None:
    sid = await answered_to_two(store)
    fresh = await new_session(store)
    listed = {item.session.id: item for item in await store.sessions_of("browser-1")}
    assert (listed[sid].done, listed[sid].answered, listed[sid].opening) == (
        3,
        2,
        "The scenario.",
    )
    assert (listed[fresh].done, listed[fresh].answered, listed[fresh].opening) == (0, 0, "")


async def test_an_unanswered_journey_is_found_and_expires_after_its_own_days(
    store: Store,
) -> None:
    answered = await answered_to_two(store)
    untouched = await new_session(store)
    found = await store.untouched_session("browser-1", "finance", since=time.time() - 60)
    assert found is not None and found.id == untouched
    assert await store.untouched_session("browser-1", "ethics", since=0) is None
    assert await store.untouched_session("browser-1", "finance", since=time.time() + 60) is None
    assert await store.expire(30, untouched_days=1) == 0
    assert await store.expire(30, untouched_days=0) == 1
    assert await store.session(untouched) is None
    assert await store.session(answered) is not None


async def test_report_feedback_is_kept_once_and_goes_with_its_journey(store: Store) -> None:
    sid = await new_session(store)
    other = await new_session(store)
    assert not await store.has_feedback(sid)
    assert await store.add_feedback(sid) is True
    assert await store.add_feedback(sid) is False  # said once per journey, counted once
    assert await store.has_feedback(sid) and not await store.has_feedback(other)
    await store.delete_session(sid)
    assert not await store.has_feedback(sid)
