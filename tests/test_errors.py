"""The one error path: the journey's refusals, Starlette's errors and a database that went away
all reach the person as a Problem, page or fragment, in the words of server/errors.py."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from starlette.requests import Request
from starlette.routing import Route

from server.app import create_app
from server.store import Unavailable
from tests.conftest import SettingsFactory
from tests.servers import serve_app
from tests.visitor import Visitor, htmx_form

pytestmark = pytest.mark.anyio


async def database_away(request: Request) -> None:
    raise Unavailable("connection refused")


@pytest.fixture
def base_url(make_settings: SettingsFactory) -> Iterator[str]:
    app = create_app(make_settings())
    # A route whose store call fails as the PostgreSQL store's does when its server is down.
    app.router.routes.append(Route("/database-away", database_away, methods=["POST"]))
    with serve_app(app) as url:
        yield url


async def test_a_database_that_went_away_is_a_503_that_keeps_the_typed_answer(
    base_url: str,
) -> None:
    async with Visitor(base_url) as visitor:
        plain = await visitor.http.post("/database-away", data={"answer": "typed"})
        fragment = await visitor.http.post(
            "/database-away", data={"answer": "typed"}, headers=htmx_form("#error-2")
        )
    assert plain.status_code == 503 and plain.headers["retry-after"] == "5"
    assert "<html" in plain.text and "was not saved" in plain.text
    assert fragment.status_code == 503
    # Aimed at the form's error slot: the textarea and what it holds stay as they were.
    assert fragment.headers["hx-retarget"] == "#error-2"
    assert "<html" not in fragment.text and "was not saved" in fragment.text


async def test_a_stream_is_refused_in_plain_text(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start()
        missing = await visitor.http.get(f"/s/{sid}/steps/9/stream")
        not_yet = await visitor.http.get(f"/s/{sid}/steps/2/stream")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/plain")
    assert not_yet.status_code == 409 and "not open yet" in not_yet.text


async def test_an_unknown_address_is_the_404_page(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        page = await client.get("/nowhere")
    assert page.status_code == 404 and "There is nothing at this address." in page.text
