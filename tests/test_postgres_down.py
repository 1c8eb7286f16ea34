"""The distributed backend with PostgreSQL gone mid-run and back: /readyz says 503, an answer
gets the 503 page that keeps it in the form, no answer is acknowledged and then lost, and the
app serves again by itself once the server is back."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from server.app import create_app
from tests import stored
from tests.databases import Database
from tests.pg import PostgresServer
from tests.servers import serve_app
from tests.test_metrics import families
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio

JOURNEYS = 8
RECOVERY_BOUND_S = 30  # generous: proves the app comes back by itself, not how fast


async def test_with_postgresql_gone_answers_get_the_503_page_and_none_is_lost(
    own_postgres: PostgresServer, redis_url: str, tmp_path: Path
) -> None:
    database = Database("postgres", own_postgres.create_database(), tmp_path / "data", redis_url)
    # A request waiting for a connection is cut by the time limit (503 too) well after the
    # pool's own acquire timeout would have answered.
    settings = database.settings(
        journey={"questions_per_session": 2}, limits={"worker_time_limit_s": 15.0}
    )
    answers: dict[str, str] = {}
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sids = [await visitor.start() for _ in range(JOURNEYS)]
            for sid in sids:
                await visitor.stream(sid, 0)
                assert (await visitor.stream(sid, 1)).names()[-1] == "done"
            answers = {sid: f"Answer of {sid[:6]}: I would wait a year." for sid in sids}

            # Answers in flight while the server goes away: each is either acknowledged (303)
            # or refused with the 503 page; which one is up to the timing.
            statuses: dict[str, int] = {}

            async def send(sid: str) -> None:
                statuses[sid] = (await visitor.answer(sid, 1, answers[sid])).status_code

            async with anyio.create_task_group() as tg:
                for sid in sids:
                    tg.start_soon(send, sid)
                await anyio.sleep(0.01)
                await anyio.to_thread.run_sync(own_postgres.stop)
            assert set(statuses.values()) <= {303, 503}, statuses

            ready = await visitor.http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["store"] == "unreachable"
            assert ready.json()["redis"] == "ok"
            refused = await visitor.answer(sids[0], 1, answers[sids[0]], htmx=True)
            assert refused.status_code == 503 and refused.headers["retry-after"] == "5"
            # Into the form's error slot: the form and the typed answer stay as they were.
            assert refused.headers["hx-retarget"] == "#error-1"
            assert "was not saved" in refused.text and "<html" not in refused.text
            page = await visitor.http.get(f"/s/{sids[0]}")
            assert page.status_code == 503 and "cannot reach its database" in page.text

            await anyio.to_thread.run_sync(own_postgres.start)
            with anyio.fail_after(RECOVERY_BOUND_S):  # no restart of the app
                while (await visitor.http.get("/readyz")).status_code != 200:  # noqa: ASYNC110 - a server to poll
                    await anyio.sleep(0.1)
            # Those refused are sent again, as the person would; one stored after all (the
            # commit reached the server, its answer did not) is 409, never saved twice.
            for sid in sids:
                if statuses[sid] == 503:
                    again = await visitor.answer(sid, 1, answers[sid])
                    assert again.status_code in (303, 409), again.text
            # And the journey goes on to its report.
            assert (await visitor.stream(sids[0], 2)).names()[-1] == "done"
            assert (await visitor.answer(sids[0], 2, "Yes.")).status_code == 303
            assert (await visitor.stream(sids[0], 3)).names()[-1] == "done"
            metrics = families((await visitor.http.get("/metrics")).text)

    for sid in sids:
        assert stored.stored(settings, sid)["answers"][:1] == [(1, answers[sid])]
    rejected = metrics["crossroads_rejected_requests"]
    # Nothing 500s: refusals are the database's 503s and the "already answered" 409s.
    assert {s.labels["status"] for s in rejected.samples if s.value} <= {"503", "409"}, rejected
