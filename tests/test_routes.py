"""The HTTP surface under a real uvicorn, on the offline model: pages, forms, streams, reports."""

from __future__ import annotations

import re

import anyio
import pytest

from server.app import create_app
from server.settings import Settings
from tests.conftest import SettingsFactory
from tests.servers import serve_app
from tests.visitor import Visitor

# Pages, forms and streams read and write the store and follow the broker: on both backends.
pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(journey={"questions_per_session": 2})


async def test_home_lists_the_categories_and_sets_a_safe_cookie(
    base_url: str, settings: Settings
) -> None:
    async with Visitor(base_url) as visitor:
        response = await visitor.home()
    assert response.status_code == 200
    for category in settings.categories.values():
        assert category.title in response.text
    assert "built-in offline writer" in response.text
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_creating_a_session_redirects_to_its_page(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        await visitor.home()
        response = await visitor.http.post(
            "/sessions",
            data={"category": "ethics", "csrf_token": visitor.token},
            headers={"HX-Request": "true"},
        )
        assert response.status_code == 200
        url = response.headers["hx-redirect"]
        assert re.fullmatch(r"/s/[\w-]+", url)
        page = await visitor.http.get(url)
    assert page.status_code == 200
    assert 'id="step-0"' in page.text and 'data-step-kind="scenario"' in page.text
    assert 'hx-sse:connect="' in page.text and 'hx-sse:close="done"' in page.text


async def test_a_form_without_its_token_changes_nothing(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        await visitor.home()
        response = await visitor.http.post(
            "/sessions", data={"category": "ethics", "csrf_token": "forged"}
        )
        assert response.status_code == 403
        assert "expired" in response.text
        home = await visitor.home()
    assert "Your journeys" not in home.text


async def test_an_unknown_category_is_refused(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        await visitor.home()
        response = await visitor.http.post(
            "/sessions", data={"category": "astrology", "csrf_token": visitor.token}
        )
    assert response.status_code == 400
    assert "Unknown life area" in response.text


async def test_the_scenario_streams_status_snapshot_chunks_then_done(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start("career")
        stream = await visitor.stream(sid, 0)
    names = stream.names()
    assert stream.status == 200
    assert names[0] == "status"
    assert names[-1] == "done"
    assert "snapshot" in names
    done = stream.events[-1].data
    assert done.startswith('<section id="step-0"') and 'data-step-kind="scenario"' in done
    # The scenario finishing opened question 1, and the done fragment carries its live element.
    assert 'id="step-1"' in done and "hx-sse:connect" in done
    words = len(stream.text().split())
    assert 120 <= words <= 260
    offsets = [int(e.id.split(".")[1]) for e in stream.events if e.id]
    assert offsets == sorted(offsets) and offsets[-1] == len(stream.text())
    assert all(e.id is None for e in stream.events if e.event in ("status", "done"))


async def test_a_finished_step_sends_status_snapshot_done(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start()
        first = await visitor.stream(sid, 0)
        again = await visitor.stream(sid, 0, last_event_id="1.3")
    assert again.names() == ["status", "snapshot", "done"]
    assert again.text() == first.text()


async def test_steps_not_open_yet_or_missing(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start()
        not_yet = await visitor.stream(sid, 2)
        missing = await visitor.stream(sid, 99)
        bad = await visitor.http.get(f"/s/{sid}/steps/x/stream")
    assert not_yet.status == 409
    assert missing.status == 404
    assert bad.status_code == 404


async def test_answers_open_the_next_step_and_the_journey_ends_in_a_report(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start("relationships")
        await visitor.stream(sid, 0)
        await visitor.stream(sid, 1)
        htmx = await visitor.answer(sid, 1, "I would talk first, because trust matters.", htmx=True)
        assert htmx.status_code == 200
        assert 'id="step-1"' in htmx.text and "trust matters" in htmx.text
        assert 'id="step-2"' in htmx.text and "hx-sse:connect" in htmx.text
        twice = await visitor.answer(sid, 1, "Again")
        assert twice.status_code == 409
        second = await visitor.stream(sid, 2)
        assert "trust matters" in second.text()  # the question reacts to the answer
        plain = await visitor.answer(sid, 2, "I'm not sure, maybe wait a week.")
        assert plain.status_code == 303 and plain.headers["location"] == f"/s/{sid}"
        report = await visitor.stream(sid, 3)
        assert report.names()[-1] == "done"
        done = report.events[-1].data
        assert 'data-step-kind="report"' in done and "<svg" in done
        markdown = await visitor.http.get(f"/s/{sid}/report.md")
        # Sharing is opt-in: the owner makes the link first.
        made = await visitor.http.post(f"/s/{sid}/share", data={"csrf_token": visitor.token})
        assert made.status_code == 303
        page = await visitor.http.get(f"/s/{sid}/report")
        share = re.search(r'href="(/r/[\w-]+)"', page.text)
    assert page.status_code == 200 and "trust matters" in page.text
    assert "How each score was given" in page.text  # the transparent rule, per dimension
    assert markdown.status_code == 200
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert "attachment" in markdown.headers["content-disposition"]
    assert "trust matters" in markdown.text and "## Scores" in markdown.text
    assert share is not None
    async with Visitor(base_url) as stranger:
        shared = await stranger.http.get(share.group(1))
        assert shared.status_code == 200 and "trust matters" in shared.text
        assert "<form" not in shared.text.split("<main", 1)[1]
        assert (await stranger.http.get(f"/s/{sid}")).status_code == 404
        assert (await stranger.http.get(f"/s/{sid}/report")).status_code == 404
        assert (await stranger.http.get(f"/s/{sid}/report.md")).status_code == 404
        refused = await stranger.answer(sid, 2, "hijack")
        assert refused.status_code == 404


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        ("", 400, "empty"),
        ("   \n ", 400, "empty"),
        ("x" * 2001, 400, "too long"),
        ("bad\x00byte", 400, "not text"),
    ],
)
async def test_bad_answers_are_refused_and_change_nothing(
    base_url: str, answer: str, status: int, message: str
) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start()
        await visitor.stream(sid, 0)
        await visitor.stream(sid, 1)
        response = await visitor.answer(sid, 1, answer, htmx=True)
        assert response.status_code == status
        assert message in response.text
        assert response.headers["hx-retarget"] == "#error-1"
        page = await visitor.http.get(f"/s/{sid}")
    assert "You answered" not in page.text
    assert (await visitor_stream_status(base_url, visitor, sid)) == 409


async def visitor_stream_status(base_url: str, visitor: Visitor, sid: str) -> int:
    async with Visitor(base_url) as again:
        again.http.cookies = visitor.http.cookies
        return (await again.stream(sid, 2)).status


async def test_a_reload_mid_stream_resumes_without_duplicates(
    make_settings: SettingsFactory,
) -> None:
    slow = make_settings(offline={"chars_per_s": 300.0})
    with serve_app(create_app(slow)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("health")
            first = await visitor.stream(sid, 0, stop_after=6)
            last_id = [e.id for e in first.events if e.id][-1]
            assert last_id is not None
            shown = first.text()
            resumed = await visitor.stream(sid, 0, last_event_id=last_id)
            assert "snapshot" not in resumed.names()
            full = await visitor.stream(sid, 0)
    assert resumed.text(prefix=shown) == full.text()


async def test_a_second_tab_sees_the_same_text(make_settings: SettingsFactory) -> None:
    slow = make_settings(offline={"chars_per_s": 600.0})
    with serve_app(create_app(slow)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("family")
            results = []

            async def tab() -> None:
                results.append(await visitor.stream(sid, 0))

            async with anyio.create_task_group() as tg:
                tg.start_soon(tab)
                tg.start_soon(tab)
    assert results[0].text() == results[1].text()
    assert results[0].events[-1].data == results[1].events[-1].data


async def test_probes(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        health = await visitor.http.get("/healthz")
        ready = await visitor.http.get("/readyz")
        missing = await visitor.http.get("/nowhere")
        wrong = await visitor.http.put("/sessions")
    assert health.status_code == 200
    assert ready.status_code == 200
    assert set(ready.json()) >= {"status", "watchdog", "store", "cache"}
    assert missing.status_code == 404 and "Page not found" in missing.text
    assert wrong.status_code == 405
