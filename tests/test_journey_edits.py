"""Changing a journey after the fact: an area picked again reopens its unanswered journey,
untouched journeys expire, a stop keeps its text, an earlier answer can be changed and any
step written again. Under a real uvicorn on the offline model; the store is read through its
own API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from server.app import create_app
from server.settings import Settings
from server.store import Store, open_store
from tests.conftest import SettingsFactory
from tests.databases import Database
from tests.servers import serve_app
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

QUESTIONS = 3


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(journey={"questions_per_session": QUESTIONS})


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[Store]:
    """The store the app uses, opened beside it as an operator's check would."""
    opened = await open_store(settings)
    try:
        yield opened
    finally:
        await opened.close()


async def pick(visitor: Visitor, category: str) -> str:
    """A card click on home: where it leads."""
    form = {"category": category, "reopen": "1", "csrf_token": visitor.token}
    response = await visitor.http.post("/sessions", data=form)
    assert response.status_code == 303, response.text[:300]
    return str(response.headers["location"]).removeprefix("/s/")


async def test_picking_an_area_again_reopens_its_unanswered_journey(database: Database) -> None:
    # Two new journeys a minute: looking at areas again must not spend them (on either
    # backend's rate limit: this process's, or Redis's).
    settings = database.settings(limits={"sessions_per_minute_per_client": 2})
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            await visitor.home()
            first = await pick(visitor, "finance")
            assert await pick(visitor, "finance") == first
            other = await pick(visitor, "ethics")
            assert other != first
            for _ in range(3):
                assert await pick(visitor, "finance") == first
                assert await pick(visitor, "ethics") == other
            # Once answered, the journey is the person's: the area starts a new one.
            await visitor.stream(first, 0)
            await visitor.stream(first, 1)
            assert (await visitor.answer(first, 1, "Slowly, with numbers.")).status_code == 303
            form = {"category": "finance", "reopen": "1", "csrf_token": visitor.token}
            response = await visitor.http.post("/sessions", data=form)
            assert response.status_code == 429  # the third new journey within the minute
            # Without asking to reopen (an API client, start over), a new one is always made.
            again = await visitor.http.post(
                "/sessions", data={"category": "ethics", "csrf_token": visitor.token}
            )
            assert again.status_code == 429


async def test_the_journeys_list_tells_journeys_apart(settings: Settings) -> None:
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            first = await visitor.start("finance")
            await visitor.stream(first, 0)
            await visitor.stream(first, 1)
            await visitor.answer(first, 1, "I would wait a week.")
            second = await visitor.start("finance")
            await visitor.stream(second, 0)
            home = (await visitor.home()).text
    openings = re.findall(r'<span class="journey-opening">([^<]+)</span>', home)
    assert len(openings) == 2 and all(len(text.split()) >= 4 for text in openings)
    assert "started just now" in home
    assert "1 of 3 answered" in home and "not answered yet" in home
    assert "UTC" not in home


async def test_untouched_journeys_expire_after_a_day_and_answered_ones_stay(
    settings: Settings, store: Store
) -> None:
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            untouched = await visitor.start("finance")
            answered = await visitor.start("ethics")
            await visitor.stream(answered, 0)
            await visitor.stream(answered, 1)
            await visitor.answer(answered, 1, "By asking the people involved.")
    assert await store.expire(30, untouched_days=1) == 0  # both are new
    assert await store.expire(30, untouched_days=0) == 1
    assert await store.session(untouched) is None
    assert await store.session(answered) is not None


async def test_stop_keeps_the_text_written_so_far(
    make_settings: SettingsFactory, store: Store
) -> None:
    settings = make_settings(offline={"chars_per_s": 200.0})
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("ethics")
            streamed = await visitor.stream(sid, 0, stop_after=4)
            stop = await visitor.http.post(
                f"/s/{sid}/steps/0/stop", data={"csrf_token": visitor.token}
            )
            assert stop.status_code == 303
            page = (await visitor.http.get(f"/s/{sid}")).text
    step = await store.step(sid, 0)
    assert step is not None and step.status == "stopped"
    shown = streamed.text().strip()
    assert shown and step.text.startswith(shown[:20])
    assert "what was written so far is kept" in page
    assert shown.split()[0] in page


async def journey_to_question(visitor: Visitor, sid: str, upto: int) -> None:
    """Stream the scenario and answer the questions before `upto`, opening question `upto`."""
    await visitor.stream(sid, 0)
    for n in range(1, upto):
        await visitor.stream(sid, n)
        response = await visitor.answer(sid, n, f"My answer {n}: I would ask my sister first.")
        assert response.status_code == 303
    await visitor.stream(sid, upto)


async def test_an_earlier_answer_can_be_changed_and_what_followed_is_written_again(
    settings: Settings, store: Store
) -> None:
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("relationships")
            await journey_to_question(visitor, sid, 3)
            before = {step.n: step for step in await store.steps(sid)}
            confirm = await visitor.http.get(f"/s/{sid}/steps/1/change")
            assert confirm.status_code == 200
            assert "My answer 1" in confirm.text  # the old answer, ready to edit
            assert "questions 2 to 3" in confirm.text
            changed = await visitor.http.post(
                f"/s/{sid}/steps/1/change",
                data={
                    "answer": "Honestly, I would walk away from it.",
                    "csrf_token": visitor.token,
                },
            )
            assert changed.status_code == 303
            assert await store.answers(sid) == {1: "Honestly, I would walk away from it."}
            fresh = await visitor.stream(sid, 2)
            assert fresh.names()[-1] == "done"
            after = {step.n: step for step in await store.steps(sid)}
    assert sorted(after) == [0, 1, 2]
    assert after[0] == before[0] and after[1].text == before[1].text
    # A new question 2 under a version above any the old one had.
    assert after[2].status == "done" and after[2].version > before[2].version


async def test_changing_an_answer_that_was_not_given_is_refused(settings: Settings) -> None:
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("health")
            await journey_to_question(visitor, sid, 1)
            confirm = await visitor.http.get(f"/s/{sid}/steps/1/change")
            post = await visitor.http.post(
                f"/s/{sid}/steps/1/change", data={"answer": "x", "csrf_token": visitor.token}
            )
    assert confirm.status_code == 409
    assert post.status_code == 409


async def test_a_question_awaiting_its_answer_is_written_again_at_once(
    settings: Settings, store: Store
) -> None:
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("career")
            await journey_to_question(visitor, sid, 2)
            page = (await visitor.http.get(f"/s/{sid}")).text
            assert f'action="/s/{sid}/steps/2/rewrite"' in page  # a button, no confirmation
            old = await store.step(sid, 2)
            session = await store.session(sid)
            response = await visitor.http.post(
                f"/s/{sid}/steps/2/rewrite", data={"csrf_token": visitor.token}
            )
            assert response.status_code == 303
            again = await visitor.stream(sid, 2)
            assert again.names()[-1] == "done"
            new = await store.step(sid, 2)
            store.trim()  # this store remembers sessions it read; the app changed this one
            reseeded = await store.session(sid)
    assert old is not None and new is not None and session is not None and reseeded is not None
    assert new.version > old.version and new.status == "done"
    assert reseeded.seed != session.seed
    assert await store.answers(sid) == {1: "My answer 1: I would ask my sister first."}


async def test_the_scenario_written_again_asks_first_and_clears_what_followed(
    settings: Settings, store: Store
) -> None:
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("family")
            await journey_to_question(visitor, sid, 2)
            confirm = await visitor.http.get(f"/s/{sid}/steps/0/rewrite")
            assert confirm.status_code == 200
            assert "Write the situation again?" in confirm.text
            assert "questions 1 to 2" in confirm.text
            response = await visitor.http.post(
                f"/s/{sid}/steps/0/rewrite", data={"csrf_token": visitor.token}
            )
            assert response.status_code == 303
            again = await visitor.stream(sid, 0)
            assert again.names()[-1] == "done"
            steps = await store.steps(sid)
    assert [step.n for step in steps] == [0, 1]  # question 1 opened by the new scenario
    assert await store.answers(sid) == {}


async def test_another_browser_cannot_change_or_rewrite(settings: Settings) -> None:
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as owner:
            sid = await owner.start("finance")
            await journey_to_question(owner, sid, 2)
        async with Visitor(url) as stranger:
            await stranger.home()
            form = {"answer": "mine now", "csrf_token": stranger.token}
            responses = [
                await stranger.http.get(f"/s/{sid}/steps/1/change"),
                await stranger.http.post(f"/s/{sid}/steps/1/change", data=form),
                await stranger.http.get(f"/s/{sid}/steps/0/rewrite"),
                await stranger.http.post(f"/s/{sid}/steps/0/rewrite", data=form),
            ]
    assert [response.status_code for response in responses] == [404] * 4
