"""The journey's controls under a real uvicorn: stop and retry, start over, delete, share and
revoke, the privacy page, advice and resources, rate limits and cookies. Each test also checks
in the database that what should not change did not."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from itsdangerous import TimestampSigner

from server.app import create_app
from server.identity import COOKIE_MAX_AGE_S, COOKIE_NAME
from server.settings import Settings, secret_key
from tests import sse, stored
from tests.conftest import SettingsFactory
from tests.databases import Database
from tests.fake_upstream import FakeUpstream, Script, serve
from tests.servers import serve_app
from tests.visitor import Visitor, htmx_form

# Stop, delete, share and write-again change the store, the broker and the cache: on both backends.
pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

SHARE = re.compile(r'href="/r/([\w-]+)"')


async def finished_journey(visitor: Visitor, category: str, questions: int) -> str:
    sid = await visitor.start(category)
    report = await visitor.finish(sid, questions)
    assert report.names()[-1] == "done", report.names()
    return sid


def share_of(page: httpx.Response) -> str | None:
    match = SHARE.search(page.text)
    return match.group(1) if match else None


async def make_share(visitor: Visitor, sid: str) -> str:
    """Sharing is opt-in: the owner asks for a link on the report page, as a person would."""
    made = await visitor.http.post(f"/s/{sid}/share", data={"csrf_token": visitor.token})
    assert made.status_code == 303
    share = share_of(await visitor.http.get(f"/s/{sid}/report"))
    assert share is not None
    return share


def share_id(settings: Settings, sid: str) -> str | None:
    session = stored.session(settings, sid)
    assert session is not None
    return session.share_id


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(journey={"questions_per_session": 1})


# Stop and retry.


async def test_stopping_a_live_step_closes_the_upstream_and_retry_writes_it_again(
    make_settings: SettingsFactory,
) -> None:
    upstream = FakeUpstream(Script())
    upstream.script(Script(stall_after=3))  # the first call (the scenario) stalls mid-text
    with serve(upstream) as upstream_url:
        settings = make_settings(
            llm={"base_url": upstream_url},
            # No deadline may end the stalled call before the person stops it, however slow
            # the machine is to the first token.
            limits={
                "first_token_timeout_s": 60.0,
                "chunk_timeout_s": 60.0,
                "worker_time_limit_s": 60.0,
            },
            stream={"abandon_grace_s": 30.0},
        )
        with serve_app(create_app(settings)) as url:
            async with Visitor(url) as visitor:
                sid = await visitor.start("career")
                # Read until the stalled text shows (how many events carry it depends on timing).
                first = await visitor.stream(sid, 0, until=lambda s: s.text().startswith("You "))
                assert first.text().startswith("You "), first.names()
                await upstream.wait_for(lambda up: up.open_streams == 1)
                assert stored.step_status(settings, sid, 0) == "generating"

                watching = sse.Stream(status=0)
                connected = anyio.Event()

                async def watch() -> None:
                    url = f"/s/{sid}/steps/0/stream"
                    async with visitor.http.stream("GET", url) as response:
                        watching.status = response.status_code

                        async def lines() -> AsyncIterator[str]:
                            async for line in response.aiter_lines():
                                connected.set()
                                yield line

                        await sse.parse(lines(), watching)

                with anyio.fail_after(15):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(watch)
                        await connected.wait()
                        forged = await visitor.http.post(
                            f"/s/{sid}/steps/0/stop", data={"csrf_token": "forged"}
                        )
                        assert forged.status_code == 403
                        assert stored.step_status(settings, sid, 0) == "generating"
                        stop = await visitor.http.post(
                            f"/s/{sid}/steps/0/stop", data={"csrf_token": visitor.token}
                        )
                        assert stop.status_code == 303
                        assert stop.headers["location"] == f"/s/{sid}"
                # The viewer that was watching ends too, and is told the step stopped.
                assert watching.names()[-1] == "done", watching.names()
                assert "is-stopped" in watching.events[-1].data

                await upstream.wait_for(lambda up: up.open_streams == 0 and up.client_closed == 1)
                assert stored.step_status(settings, sid, 0) == "stopped"
                calls = len(upstream.requests)

                again = await visitor.stream(sid, 0)
                assert again.names() == ["status", "snapshot", "done"]
                assert 'id="step-0"' in again.events[-1].data
                assert "is-stopped" in again.events[-1].data
                assert "Write it again" in again.events[-1].data

                page = await visitor.http.get(f"/s/{sid}")
                assert page.status_code == 200 and "is-stopped" in page.text
                await anyio.sleep(0.3)  # nothing should start: give it a chance to (backstop)
                assert stored.step_status(settings, sid, 0) == "stopped"
                assert len(upstream.requests) == calls
                assert stored.step_status(settings, sid, 1) is None

                forged = await visitor.http.post(
                    f"/s/{sid}/steps/0/retry", data={"csrf_token": "forged"}
                )
                assert forged.status_code == 403
                assert stored.step_status(settings, sid, 0) == "stopped"
                retry = await visitor.http.post(
                    f"/s/{sid}/steps/0/retry", data={"csrf_token": visitor.token}
                )
                assert retry.status_code == 303
                done = await visitor.stream(sid, 0)
                assert done.names()[-1] == "done"
                assert "is-done" in done.events[-1].data
                assert done.text().startswith("You stand at a fork")
                assert (
                    stored.step_status(settings, sid, 0) == "done"
                )  # stored before `done` is sent
                assert len(upstream.requests) > calls  # asked again (question 1 may follow)
                assert stored.step_status(settings, sid, 1) is not None  # the next step opened


async def test_stop_and_retry_with_htmx_on_the_paced_offline_model(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(offline={"chars_per_s": 300.0})
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("ethics")
            await visitor.stream(sid, 0, stop_after=3)
            assert stored.step_status(settings, sid, 0) == "generating"
            htmx = htmx_form("#error-0")
            stop = await visitor.http.post(
                f"/s/{sid}/steps/0/stop", data={"csrf_token": visitor.token}, headers=htmx
            )
            assert stop.status_code == 200
            assert stop.text.startswith('<section id="step-0"') and "is-stopped" in stop.text
            assert 'action="/s/' + sid + '/steps/0/retry"' in stop.text
            assert stored.step_status(settings, sid, 0) == "stopped"
            before = stored.stored(settings, sid)
            page = await visitor.http.get(f"/s/{sid}")
            assert "is-stopped" in page.text and "hx-sse:connect" not in page.text
            assert stored.stored(settings, sid) == before

            retry = await visitor.http.post(
                f"/s/{sid}/steps/0/retry", data={"csrf_token": visitor.token}, headers=htmx
            )
            assert retry.status_code == 200
            assert "is-live" in retry.text and f"/s/{sid}/steps/0/stream" in retry.text
            assert stored.step_status(settings, sid, 0) in ("open", "generating")
            done = await visitor.stream(sid, 0)
            assert done.names()[-1] == "done" and "is-done" in done.events[-1].data
            assert stored.step_status(settings, sid, 0) == "done"


async def test_write_it_again_right_after_stopping_finishes_the_step(
    make_settings: SettingsFactory,
) -> None:
    """A retry sent while the stopped task is still being cancelled must not be lost."""
    settings = make_settings(offline={"chars_per_s": 400.0})
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("family")
            await visitor.stream(sid, 0, stop_after=4)
            form = {"csrf_token": visitor.token}
            stop = await visitor.http.post(f"/s/{sid}/steps/0/stop", data=form)
            retry = await visitor.http.post(f"/s/{sid}/steps/0/retry", data=form)
            assert stop.status_code == retry.status_code == 303
            with anyio.fail_after(20):
                done = await visitor.stream(sid, 0)
            assert done.names()[-1] == "done" and "is-done" in done.events[-1].data
            assert stored.step_status(settings, sid, 0) == "done"


async def test_stop_on_a_finished_step_changes_nothing(base_url: str, settings: Settings) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start()
        await visitor.stream(sid, 0)
        before = stored.stored(settings, sid)
        stop = await visitor.http.post(f"/s/{sid}/steps/0/stop", data={"csrf_token": visitor.token})
        retry = await visitor.http.post(
            f"/s/{sid}/steps/0/retry", data={"csrf_token": visitor.token}
        )
        assert stop.status_code == retry.status_code == 303
        assert stored.stored(settings, sid)["steps"][0] == before["steps"][0]
        assert stored.step_status(settings, sid, 0) == "done"


# Start over.


async def test_start_over_makes_a_new_session_with_a_new_scenario(
    base_url: str, settings: Settings
) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start("family")
        first = (await visitor.stream(sid, 0)).text()
        await visitor.stream(sid, 1)  # question 1 is written after the scenario: let it finish
        before = stored.stored(settings, sid)
        forged = await visitor.http.post(f"/s/{sid}/restart", data={"csrf_token": "forged"})
        assert forged.status_code == 403
        assert stored.counts(settings)["sessions"] == 1
        texts = {first}
        seeds = {before["sessions"][0].seed}
        fresh: list[str] = []
        for _ in range(6):  # the bank has several scenarios per area; a new seed picks anew
            restart = await visitor.http.post(
                f"/s/{sid}/restart", data={"csrf_token": visitor.token}
            )
            assert restart.status_code == 303
            new_sid = restart.headers["location"].removeprefix("/s/")
            assert new_sid != sid and new_sid not in fresh
            fresh.append(new_sid)
            texts.add((await visitor.stream(new_sid, 0)).text())
            session = stored.session(settings, new_sid)
            assert session is not None and session.category == "family"
            seeds.add(session.seed)
            if len(texts) > 1:
                break
        assert len(texts) > 1, "start over gave the same scenario every time"
        assert len(seeds) == len(fresh) + 1
        htmx = await visitor.http.post(
            f"/s/{sid}/restart",
            data={"csrf_token": visitor.token},
            headers=htmx_form("#session-error"),
        )
        assert htmx.status_code == 200 and htmx.headers["hx-redirect"].startswith("/s/")
        # The old journey is kept as it was.
        assert stored.stored(settings, sid) == before
    async with Visitor(base_url) as stranger:
        await stranger.home()
        refused = await stranger.http.post(f"/s/{sid}/restart", data={"csrf_token": stranger.token})
        assert refused.status_code == 404
    assert stored.counts(settings)["sessions"] == len(fresh) + 2


async def test_start_over_is_refused_under_memory_pressure(
    make_settings: SettingsFactory,
) -> None:
    rss_mb = [10.0]
    settings = make_settings(
        limits={"worker_memory_limit_mb": 100, "watchdog_interval_s": 0.05},
    )
    app = create_app(settings, rss_probe=lambda: rss_mb[0])
    with serve_app(app) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start()
            await visitor.stream(sid, 0)
            rss_mb[0] = 99.0
            with anyio.fail_after(10):
                # Polling: the watchdog samples on its own schedule, with no event to wait on.
                while (await visitor.http.get("/readyz")).status_code != 503:  # noqa: ASYNC110
                    await anyio.sleep(0.05)
            refused = await visitor.http.post(
                f"/s/{sid}/restart",
                data={"csrf_token": visitor.token},
                headers=htmx_form("#session-error"),
            )
            assert refused.status_code == 503
            assert refused.headers["hx-retarget"] == "#session-error"
            assert "retry-after" in refused.headers
    assert stored.counts(settings)["sessions"] == 1


# Delete.


async def test_deleting_a_journey_removes_everything_after_a_confirmation(
    database: Database,
) -> None:
    upstream = FakeUpstream(Script())
    with serve(upstream) as upstream_url:
        settings = database.settings(
            llm={"base_url": upstream_url}, journey={"questions_per_session": 1}
        )
        with serve_app(create_app(settings)) as url:
            async with Visitor(url) as visitor, Visitor(url) as stranger:
                sid = await finished_journey(visitor, "finance", 1)
                keep = await finished_journey(visitor, "finance", 1)
                share = await make_share(visitor, sid)
                assert stored.cached_for(settings, sid) >= 3  # scenario, question, report
                before = stored.stored(settings, sid)
                kept = stored.stored(settings, keep)
                kept_cache = stored.cached_for(settings, keep)

                confirm = await visitor.http.get(f"/s/{sid}/delete")
                assert confirm.status_code == 200
                assert f'action="/s/{sid}/delete"' in confirm.text
                assert 'name="csrf_token"' in confirm.text and "cannot be undone" in confirm.text
                assert stored.stored(settings, sid) == before  # the confirmation changes nothing

                await stranger.home()
                assert (await stranger.http.get(f"/s/{sid}/delete")).status_code == 404
                other = await stranger.http.post(
                    f"/s/{sid}/delete", data={"csrf_token": stranger.token}
                )
                assert other.status_code == 404
                forged = await visitor.http.post(f"/s/{sid}/delete", data={})
                assert forged.status_code == 403
                assert stored.stored(settings, sid) == before
                assert (await stranger.http.get(f"/r/{share}")).status_code == 200

                deleted = await visitor.http.post(
                    f"/s/{sid}/delete", data={"csrf_token": visitor.token}
                )
                assert deleted.status_code == 303
                assert deleted.headers["location"] == "/?deleted=1"
                home = await visitor.http.get("/?deleted=1")
                assert "was deleted" in home.text
                assert f"/s/{sid}" not in home.text and f"/s/{keep}" in home.text

                for path in (
                    f"/s/{sid}",
                    f"/s/{sid}/report",
                    f"/s/{sid}/report.md",
                    f"/s/{sid}/delete",
                    f"/r/{share}",
                ):
                    assert (await visitor.http.get(path)).status_code == 404, path
                assert (await visitor.stream(sid, 0)).status == 404
                assert (await stranger.http.get(f"/r/{share}")).status_code == 404
                again = await visitor.http.post(
                    f"/s/{sid}/delete", data={"csrf_token": visitor.token}
                )
                assert again.status_code == 404

                assert stored.stored(settings, sid) == {"sessions": [], "steps": [], "answers": []}
                assert stored.cached_for(settings, sid) == 0
                # The other journey, and its cache entries, are untouched.
                assert stored.stored(settings, keep) == kept
                assert stored.cached_for(settings, keep) == kept_cache


async def test_deleting_a_running_journey_stops_its_step(make_settings: SettingsFactory) -> None:
    settings = make_settings(offline={"chars_per_s": 50.0})
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start("health")
            await visitor.stream(sid, 0, stop_after=3)
            deleted = await visitor.http.post(
                f"/s/{sid}/delete",
                data={"csrf_token": visitor.token},
                headers={"HX-Request": "true"},
            )
            assert deleted.status_code == 200 and deleted.headers["hx-redirect"] == "/?deleted=1"
            await anyio.sleep(0.3)  # a cancelled step must not write itself back (backstop)
            assert stored.stored(settings, sid) == {"sessions": [], "steps": [], "answers": []}
            assert (await visitor.stream(sid, 0)).status == 404


# Share and revoke.


async def test_revoking_and_replacing_the_share_link(base_url: str, settings: Settings) -> None:
    async with Visitor(base_url) as visitor, Visitor(base_url) as stranger:
        sid = await finished_journey(visitor, "career", 1)
        old = await make_share(visitor, sid)
        assert (await stranger.http.get(f"/r/{old}")).status_code == 200

        await stranger.home()
        other = await stranger.http.post(
            f"/s/{sid}/share/revoke", data={"csrf_token": stranger.token}
        )
        assert other.status_code == 404
        forged = await visitor.http.post(f"/s/{sid}/share/revoke", data={"csrf_token": "x"})
        assert forged.status_code == 403
        assert getattr(stored.session(settings, sid), "share_id", None) == old

        before = stored.stored(settings, sid)
        revoke = await visitor.http.post(
            f"/s/{sid}/share/revoke", data={"csrf_token": visitor.token}
        )
        assert revoke.status_code == 303
        assert revoke.headers["location"] == f"/s/{sid}/report#share"
        assert (await stranger.http.get(f"/r/{old}")).status_code == 404
        report = await visitor.http.get(f"/s/{sid}/report")
        assert "Sharing is off" in report.text and share_of(report) is None
        assert "Make a share link" in report.text
        session_page = await visitor.http.get(f"/s/{sid}")
        assert "/r/" not in session_page.text
        after = stored.stored(settings, sid)
        assert getattr(stored.session(settings, sid), "share_id", "") is None
        assert after["steps"] == before["steps"] and after["answers"] == before["answers"]

        made = await visitor.http.post(f"/s/{sid}/share", data={"csrf_token": visitor.token})
        assert made.status_code == 303
        new = share_of(await visitor.http.get(f"/s/{sid}/report"))
        assert new is not None and new != old
        shared = await stranger.http.get(f"/r/{new}")
        assert shared.status_code == 200 and "How you decide" in shared.text
        assert (await stranger.http.get(f"/r/{old}")).status_code == 404
        # Replacing the link kills the one before it.
        await visitor.http.post(f"/s/{sid}/share", data={"csrf_token": visitor.token})
        newest = share_of(await visitor.http.get(f"/s/{sid}/report"))
        assert newest not in (None, old, new)
        assert (await stranger.http.get(f"/r/{new}")).status_code == 404
        assert (await stranger.http.get(f"/r/{newest}")).status_code == 200
        assert stored.stored(settings, sid)["steps"] == before["steps"]


async def test_sharing_is_off_until_the_owner_asks_and_shared_pages_are_not_indexed(
    base_url: str, settings: Settings
) -> None:
    async with Visitor(base_url) as visitor, Visitor(base_url) as stranger:
        sid = await finished_journey(visitor, "health", 1)
        assert share_id(settings, sid) is None
        report = await visitor.http.get(f"/s/{sid}/report")
        journey = await visitor.http.get(f"/s/{sid}")
        for page in (report, journey):
            assert "/r/" not in page.text and "Make a share link" in page.text
        assert "Anyone with this link" not in report.text and "Sharing is off" in report.text
        assert 'name="robots"' not in report.text  # the owner's own page is not a shared one

        share = await make_share(visitor, sid)
        shared = await stranger.http.get(f"/r/{share}")
        assert shared.status_code == 200
        assert shared.headers["x-robots-tag"] == "noindex, nofollow"
        assert '<meta name="robots" content="noindex, nofollow">' in shared.text
        owner_report = await visitor.http.get(f"/s/{sid}/report")
        assert "Anyone with this link can read this report" in owner_report.text
        assert 'data-copy="#share-link"' in owner_report.text
        privacy = await stranger.http.get("/privacy")
        assert "Sharing is off unless you turn it on" in privacy.text
        assert "ask search engines not to index" in privacy.text


async def test_this_doesnt_fit_me_is_stored_once_and_counted(
    base_url: str, settings: Settings
) -> None:
    def counted(metrics: httpx.Response) -> float:
        line = next(
            line
            for line in metrics.text.splitlines()
            if line.startswith("crossroads_report_feedback_total ")
        )
        return float(line.split()[1])

    def said(sid: str) -> bool:
        return stored.run(settings, lambda store: store.has_feedback(sid))

    async with Visitor(base_url) as visitor, Visitor(base_url) as stranger:
        unfinished = await visitor.start("career")
        early = await visitor.http.post(
            f"/s/{unfinished}/feedback", data={"csrf_token": visitor.token}
        )
        assert early.status_code == 409 and not said(unfinished)
        sid = await finished_journey(visitor, "career", 1)
        before = counted(await visitor.http.get("/metrics"))
        journey = await visitor.http.get(f"/s/{sid}")
        assert "This doesn't fit me" in journey.text
        await stranger.home()
        other = await stranger.http.post(f"/s/{sid}/feedback", data={"csrf_token": stranger.token})
        assert other.status_code == 404
        forged = await visitor.http.post(f"/s/{sid}/feedback", data={"csrf_token": "x"})
        assert forged.status_code == 403
        assert not said(sid)

        answer = await visitor.http.post(
            f"/s/{sid}/feedback",
            data={"csrf_token": visitor.token},
            headers=htmx_form("#page-error"),
        )
        assert answer.status_code == 200 and "does not fit you" in answer.text
        plain = await visitor.http.post(
            f"/s/{sid}/feedback", data={"csrf_token": visitor.token, "back": "report"}
        )
        assert plain.status_code == 303
        assert plain.headers["location"] == f"/s/{sid}/report#feedback-{sid}"
        assert said(sid)
        assert counted(await visitor.http.get("/metrics")) == before + 1  # once per journey
        for path in (f"/s/{sid}", f"/s/{sid}/report"):
            shown = await visitor.http.get(path)
            assert "does not fit you" in shown.text and "This doesn't fit me" not in shown.text
        share = await make_share(visitor, sid)
        main = (await stranger.http.get(f"/r/{share}")).text.split("<main", 1)[1]
        assert "/feedback" not in main and "does not fit you" not in main  # the owner's only
        deleted = await visitor.http.post(f"/s/{sid}/delete", data={"csrf_token": visitor.token})
        assert deleted.status_code == 303 and not said(sid)


# Privacy.


async def test_the_privacy_page_is_linked_from_every_page(
    base_url: str, settings: Settings
) -> None:
    async with Visitor(base_url) as visitor, Visitor(base_url) as stranger:
        sid = await finished_journey(visitor, "ethics", 1)
        share = await make_share(visitor, sid)
        pages = {
            "home": await visitor.http.get("/"),
            "session": await visitor.http.get(f"/s/{sid}"),
            "report": await visitor.http.get(f"/s/{sid}/report"),
            "delete": await visitor.http.get(f"/s/{sid}/delete"),
            "shared": await stranger.http.get(f"/r/{share}"),
            "not found": await stranger.http.get(f"/s/{sid}"),
            "no page": await visitor.http.get("/nowhere"),
            "forbidden": await visitor.http.post("/sessions", data={"category": "ethics"}),
            "privacy": await visitor.http.get("/privacy"),
        }
        for name, page in pages.items():
            assert 'href="/privacy"' in page.text, name
        assert pages["not found"].status_code == 404 and pages["forbidden"].status_code == 403
        privacy = pages["privacy"]
    assert privacy.status_code == 200
    assert f"{settings.storage.session_ttl_days} days" in privacy.text
    assert "not sent to anybody" in privacy.text
    assert "configured model provider" not in privacy.text


async def test_the_privacy_page_names_a_live_model(make_settings: SettingsFactory) -> None:
    settings = make_settings(
        llm={"base_url": "http://127.0.0.1:9/v1", "model": "acme-writer-7"},
        storage={"session_ttl_days": 12},
    )
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            privacy = await visitor.http.get("/privacy")
    assert "sent to the configured model provider" in privacy.text
    assert "acme-writer-7" in privacy.text and "12 days" in privacy.text
    assert "not sent to anybody" not in privacy.text


# Advice and resources.


@pytest.mark.parametrize(
    ("category", "expected"),
    [
        ("health", ["your local practice", "https://findahelpline.com", "112 / 911 / 999"]),
        ("relationships", ["https://findahelpline.com", "112 / 911 / 999"]),
        ("finance", []),
    ],
)
async def test_reports_carry_the_advice_line_and_their_areas_resources(
    base_url: str, settings: Settings, category: str, expected: list[str]
) -> None:
    async with Visitor(base_url) as visitor, Visitor(base_url) as stranger:
        sid = await visitor.start(category)
        report = await visitor.finish(sid, 1)
        done = report.events[-1].data
        share = await make_share(visitor, sid)
        page = await visitor.http.get(f"/s/{sid}/report")
        shared = await stranger.http.get(f"/r/{share}")
        markdown = await visitor.http.get(f"/s/{sid}/report.md")
    resources = settings.categories[category].resources
    assert len(resources) == len(expected)
    for html in (done, page.text, shared.text):
        assert "A reflection, not professional advice." in html
        if expected:
            assert "If you would like support" in html
            for resource, contact in zip(resources, expected, strict=True):
                assert resource.contact == contact
                assert contact in html and resource.name in html
        else:
            assert "If you would like support" not in html
            assert 'class="resources"' not in html
    assert "not professional advice" in markdown.text


# Rate limits.


async def test_creating_sessions_is_rate_limited_per_client(
    database: Database,
) -> None:
    settings = database.settings(limits={"sessions_per_minute_per_client": 2})
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            first = await visitor.start()
            await visitor.start()
            plain = await visitor.http.post(
                "/sessions", data={"category": "finance", "csrf_token": visitor.token}
            )
            assert plain.status_code == 429
            assert 1 <= int(plain.headers["retry-after"]) <= 60
            assert "Slow down a little" in plain.text and "nothing was lost" in plain.text
            assert 'href="/privacy"' in plain.text  # a whole page
            htmx = await visitor.http.post(
                "/sessions",
                data={"category": "finance", "csrf_token": visitor.token},
                headers=htmx_form("#home-error"),
            )
            assert htmx.status_code == 429
            assert htmx.headers["hx-retarget"] == "#home-error"
            assert "retry-after" in htmx.headers
            assert htmx.text.startswith('<p class="error-message">')
            assert "try again in" in htmx.text
            home = (await visitor.home()).text
            # Start over counts as a new session too.
            restart = await visitor.http.post(
                f"/s/{first}/restart", data={"csrf_token": visitor.token}
            )
            assert restart.status_code == 429
        assert "Your journeys" in home
    assert stored.counts(settings)["sessions"] == 2


async def test_answers_are_rate_limited_per_client(database: Database) -> None:
    settings = database.settings(
        journey={"questions_per_session": 2}, limits={"answers_per_minute_per_client": 1}
    )
    with serve_app(create_app(settings)) as url:
        async with Visitor(url) as visitor:
            sid = await visitor.start()
            await visitor.stream(sid, 0)
            await visitor.stream(sid, 1)
            assert (await visitor.answer(sid, 1, "Carefully.")).status_code == 303
            await visitor.stream(sid, 2)
            before = stored.stored(settings, sid)
            htmx = await visitor.answer(sid, 2, "A second answer too soon.", htmx=True)
            assert htmx.status_code == 429
            assert htmx.headers["hx-retarget"] == "#error-2"
            assert htmx.headers["hx-reswap"] == "innerHTML"
            assert int(htmx.headers["retry-after"]) >= 1
            assert "nothing was lost" in htmx.text
            plain = await visitor.answer(sid, 2, "A second answer too soon.")
            assert plain.status_code == 429 and "Slow down a little" in plain.text
            assert stored.stored(settings, sid) == before
            assert stored.step_status(settings, sid, 3) is None


# Cookies.


def flip(char: str) -> str:
    return "B" if char == "A" else "A"


async def test_a_tampered_cookie_is_a_new_browser(base_url: str, settings: Settings) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start()
        await visitor.stream(sid, 0)
        await visitor.stream(sid, 1)
        cookie = visitor.http.cookies[COOKIE_NAME]
        value, _, signature = cookie.rpartition(".")
        middle = len(signature) // 2
        forged = f"{value}.{signature[:middle]}{flip(signature[middle])}{signature[middle + 1 :]}"
        await check_refused(base_url, settings, sid, forged, visitor.token)


async def test_an_expired_cookie_is_a_new_browser(base_url: str, settings: Settings) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start()
        await visitor.stream(sid, 0)
        await visitor.stream(sid, 1)
        cookie = visitor.http.cookies[COOKIE_NAME]

    class OldSigner(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - COOKIE_MAX_AGE_S - 3600

    signer = TimestampSigner(secret_key(settings), salt="crossroads.browser")
    browser = signer.unsign(cookie).decode()
    expired = OldSigner(secret_key(settings), salt="crossroads.browser").sign(browser).decode()
    assert expired != cookie and signer.unsign(expired).decode() == browser  # only its age differs
    await check_refused(base_url, settings, sid, expired, visitor.token)


async def check_refused(
    base_url: str, settings: Settings, sid: str, cookie: str, token: str
) -> None:
    """A bad cookie sees none of the old browser's journeys and its forms are refused."""
    before = stored.stored(settings, sid)
    sessions = stored.counts(settings)["sessions"]
    async with httpx.AsyncClient(base_url=base_url, cookies={COOKIE_NAME: cookie}) as client:
        page = await client.get(f"/s/{sid}")
        assert page.status_code == 404
        assert page.cookies.get(COOKIE_NAME) not in (None, cookie)  # a new browser id
        client.cookies = httpx.Cookies({COOKIE_NAME: cookie})
        home = await client.get("/")
        assert "Your journeys" not in home.text
        client.cookies = httpx.Cookies({COOKIE_NAME: cookie})
        created = await client.post("/sessions", data={"category": "finance", "csrf_token": token})
        assert created.status_code == 403
        client.cookies = httpx.Cookies({COOKIE_NAME: cookie})
        answer = await client.post(
            f"/s/{sid}/steps/1/answer", data={"answer": "mine now", "csrf_token": token}
        )
        assert answer.status_code == 404
        client.cookies = httpx.Cookies({COOKIE_NAME: cookie})
        deleted = await client.post(f"/s/{sid}/delete", data={"csrf_token": token})
        assert deleted.status_code == 404
        client.cookies = httpx.Cookies({COOKIE_NAME: cookie})
        assert (await client.get(f"/s/{sid}/steps/0/stream")).status_code == 404
    assert stored.stored(settings, sid) == before
    assert stored.counts(settings)["sessions"] == sessions


async def test_an_unfinished_shared_report_reveals_nothing(
    base_url: str, settings: Settings
) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start("career")
        # Sharing is opt-in: the owner turns it on before the report is written.
        made = await visitor.http.post(f"/s/{sid}/share", data={"csrf_token": visitor.token})
        assert made.status_code == 303
    link = share_id(settings, sid)
    assert link is not None
    async with Visitor(base_url) as stranger:
        response = await stranger.http.get(f"/r/{link}")
    assert response.status_code == 404
    assert sid not in response.text
