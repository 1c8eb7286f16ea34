"""The distributed backend with Redis gone mid-run and back: pages, journeys and deletion keep
working, rate limits allow and count, nothing 500s, and the cache works again by itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.app import create_app
from tests import stored
from tests.databases import Database
from tests.fake_upstream import FakeUpstream, serve
from tests.redis_server import RedisServer
from tests.servers import serve_app
from tests.test_metrics import families, value
from tests.test_views import banner
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio


@pytest.fixture
def distributed(postgres_url: str, redis_url: str, tmp_path: Path) -> Database:
    return Database("postgres", postgres_url, tmp_path / "data", redis_url)


@pytest.fixture
def upstream_url() -> Iterator[str]:
    with serve(FakeUpstream()) as url:
        yield url


async def test_with_redis_gone_pages_and_journeys_work_and_nothing_fails(
    distributed: Database, redis_server: RedisServer, upstream_url: str
) -> None:
    settings = distributed.settings(
        llm={"base_url": upstream_url, "model": "fake-model"},
        journey={"questions_per_session": 1},
        limits={"sessions_per_minute_per_client": 5},
    )
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            before = await visitor.start()
            await visitor.stream(before, 0)
            assert stored.cached_for(settings, before) >= 1  # the scenario (and on), in Redis

            redis_server.stop()
            ready = await visitor.http.get("/readyz")
            assert ready.status_code == 200  # degraded, not out of rotation
            assert ready.json()["redis"] == "unreachable"
            assert ready.json()["status"] == "degraded"
            assert (await visitor.home()).status_code == 200
            assert (await visitor.http.get(f"/s/{before}")).status_code == 200
            # New journeys start (the rate limit allows unchecked) and are written.
            sids = [await visitor.start() for _ in range(6)]  # past the limit of 5
            report = await visitor.finish(sids[0], 1, ["I would ask first."])
            assert report.names()[-1] == "done"
            # Every step is the built-in writer's now, and the header says so.
            away_page = (await visitor.http.get(f"/s/{sids[0]}")).text
            deleted = await visitor.http.post(
                f"/s/{sids[1]}/delete", data={"csrf_token": visitor.token}
            )
            assert deleted.status_code == 303
            metrics = families((await visitor.http.get("/metrics")).text)

            redis_server.start()  # empty, as after a crash
            ready = await visitor.http.get("/readyz")
            assert ready.json()["redis"] == "ok" and ready.json()["status"] == "ok"
            after = await visitor.start()
            await visitor.stream(after, 0)
            assert stored.cached_for(settings, after) >= 1  # the cache works again by itself
            back_page = (await visitor.http.get(f"/s/{after}")).text
    assert banner(away_page) == "For now the built-in offline writer is writing, not fake-model"
    assert banner(back_page) == "Written live by fake-model"
    unchecked = metrics["crossroads_ratelimit_unavailable"]
    assert value(unchecked, "_total", limit="sessions") == 6
    rejected = metrics["crossroads_rejected_requests"]
    assert not [s for s in rejected.samples if s.labels["status"].startswith("5")], rejected
    assert stored.session(settings, sids[1]) is None
    assert [s.status for s in stored.stored(settings, sids[0])["steps"]] == ["done"] * 3
