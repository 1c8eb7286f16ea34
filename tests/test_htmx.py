"""The htmx vocabulary: request details, response helpers, and every form naming its error slot."""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest
from starlette.datastructures import Headers

from server.app import create_app
from server.htmx import PAGE_ERROR_SLOT, HtmxDetails, client_redirect, retarget
from tests.conftest import SettingsFactory
from tests.servers import serve_app
from tests.visitor import Visitor


def test_a_plain_request_is_not_htmx() -> None:
    details = HtmxDetails.of(Headers({"x-error-slot": "#error-2"}))
    assert not details.request
    assert details.error_slot == PAGE_ERROR_SLOT


def test_htmx_details_are_read_from_the_headers() -> None:
    details = HtmxDetails.of(
        Headers(
            {
                "hx-request": "true",
                "hx-target": "section#step-2",
                "hx-source": "form#f1",
                "hx-current-url": "http://x/s/abc",
                "x-error-slot": "#error-2",
            }
        )
    )
    assert details == HtmxDetails(True, "section#step-2", "form#f1", "http://x/s/abc", "#error-2")


@pytest.mark.parametrize("slot", ["", "error-2", "#a b", "#x,body", "#" + "a" * 80, "body"])
def test_an_error_slot_that_is_not_a_plain_id_goes_to_the_page_slot(slot: str) -> None:
    details = HtmxDetails.of(Headers({"hx-request": "true", "x-error-slot": slot}))
    assert details.error_slot == PAGE_ERROR_SLOT


def test_response_helpers() -> None:
    assert client_redirect("/s/abc").headers["hx-redirect"] == "/s/abc"
    response = retarget(client_redirect("/x"), "#error-1")
    assert response.headers["hx-retarget"] == "#error-1"
    assert response.headers["hx-reswap"] == "innerHTML"


class _Page(HTMLParser):
    """The ids on a page and, for each htmx form, where it posts and the slot it names."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.forms: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.add(str(found["id"]))
        if tag == "form" and found.get("hx-post"):
            headers = json.loads(found.get("hx-headers") or "{}")
            self.forms.append((str(found["hx-post"]), headers.get("X-Error-Slot")))


@pytest.fixture
def base_url(make_settings: SettingsFactory) -> Iterator[str]:
    settings = make_settings(journey={"questions_per_session": 2})
    with serve_app(create_app(settings)) as url:
        yield url


@pytest.mark.anyio
async def test_every_htmx_form_names_an_error_slot_that_is_on_its_page(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        home = (await visitor.home()).text
        sid = await visitor.start()
        await visitor.stream(sid, 0)
        await visitor.stream(sid, 1)
        session = (await visitor.http.get(f"/s/{sid}")).text
    expected = {
        "/sessions": "#home-error",
        f"/s/{sid}/restart": "#session-error",
        f"/s/{sid}/steps/1/answer": "#error-1",
    }
    seen = set()
    for html in (home, session):
        page = _Page()
        page.feed(html)
        assert page.forms
        for action, slot in page.forms:
            assert slot is not None, f"the form posting to {action} names no error slot"
            assert slot.removeprefix("#") in page.ids, f"{action} names {slot}, not on the page"
            if action in expected:
                assert slot == expected[action]
                seen.add(action)
    assert seen == set(expected)


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts.append(dict(attrs))


@pytest.mark.anyio
async def test_htmx_starts_only_after_its_sse_extension_has_registered(base_url: str) -> None:
    """htmx loaded with `defer` starts on a timer that may run before hx-sse.js, and then the
    live steps present at load never connect (a stream stuck at "writing", now and then)."""
    async with Visitor(base_url) as visitor:
        home = (await visitor.home()).text
    parser = _Scripts()
    parser.feed(home)
    sources = [script.get("src") for script in parser.scripts]
    core, extension = (
        sources.index("/static/vendor/htmx.min.js"),
        sources.index("/static/vendor/ext/hx-sse.js"),
    )
    assert core < extension
    for script in parser.scripts[: extension + 1]:
        assert "defer" not in script and "async" not in script, script
