"""The app on either backend: a journey run over HTTP is kept where the settings say."""

from __future__ import annotations

import pytest

from server.app import create_app
from tests.databases import Database
from tests.servers import serve_app
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio


async def test_a_whole_journey_is_stored_in_the_chosen_database(database: Database) -> None:
    settings = database.settings(journey={"questions_per_session": 1})
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start()
            report = await visitor.finish(sid, 1, ["Because it is mine to decide."])
            ready = await visitor.http.get("/readyz")
    assert report.names()[-1] == "done"
    assert ready.status_code == 200 and ready.json()["store"] == "ok"
    assert ready.json()["redis"] == ("ok" if database.backend == "postgres" else "not used")
    store = await database.open()  # what another worker, or an operator, reads afterwards
    try:
        assert await store.answers(sid) == {1: "Because it is mine to decide."}
        assert [(s.n, s.status) for s in await store.steps(sid)] == [
            (0, "done"),
            (1, "done"),
            (2, "done"),
        ]
    finally:
        await store.close()
