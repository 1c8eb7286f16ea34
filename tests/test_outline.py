"""One heading outline a screen reader can follow: the report's sections under "Your report",
the questions under "Your answers", never a level skipped on the way down."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from html.parser import HTMLParser

import pytest

from server.app import create_app
from tests.conftest import SettingsFactory
from tests.servers import serve_app
from tests.visitor import Visitor

pytestmark = pytest.mark.anyio


class _Headings(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[int, str]] = []
        self._open: int | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if len(tag) == 2 and tag[0] == "h" and tag[1] in "123456":
            self._open = int(tag[1])
            self.found.append((self._open, ""))

    def handle_endtag(self, tag: str) -> None:
        if self._open is not None and tag == f"h{self._open}":
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            level, text = self.found[-1]
            self.found[-1] = (level, (text + data).strip())


def outline(html: str) -> list[tuple[int, str]]:
    parser = _Headings()
    parser.feed(html)
    return parser.found


def under(headings: list[tuple[int, str]], parent: str) -> list[tuple[int, str]]:
    """The headings inside the section that `parent` opens."""
    start = next(i for i, (_, text) in enumerate(headings) if text == parent)
    level = headings[start][0]
    inside = []
    for heading in headings[start + 1 :]:
        if heading[0] <= level:
            break
        inside.append(heading)
    return inside


@pytest.fixture
def base_url(make_settings: SettingsFactory) -> Iterator[str]:
    with serve_app(create_app(make_settings(journey={"questions_per_session": 2}))) as url:
        yield url


async def test_the_session_and_report_pages_have_one_outline(base_url: str) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start("ethics")
        report = await visitor.finish(sid, 2)
        assert report.names()[-1] == "done"
        pages = [
            (await visitor.http.get(f"/s/{sid}")).text,
            (await visitor.http.get(f"/s/{sid}/report")).text,
        ]
    for html in pages:
        headings = outline(html)
        assert next(level for level, _ in headings) == 1
        for (above, _), (below, text) in itertools.pairwise(headings):
            assert below <= above + 1, f"{text!r} skips a level: {headings}"
        sections = [text for level, text in under(headings, "Your report") if level == 3]
        assert "Summary" in sections and "Strengths" in sections, headings
    answers = under(outline(pages[1]), "Your answers")
    assert [text for _, text in answers] == ["Question 1", "Question 2"]
