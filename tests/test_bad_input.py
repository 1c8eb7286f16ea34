"""Bad input gets a clear message, the right status, and changes nothing; never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx
import pytest

from server.settings import Settings
from tests import stored
from tests.conftest import SettingsFactory
from tests.visitor import Visitor, htmx_form

pytestmark = pytest.mark.anyio
# Refusals that the store decides (a form sent twice, another browser's session, an unknown
# category) and resumes through the broker run on both backends (tests/databases.py); the
# answer and path tables are refused before the store is reached, on SQLite alone.
both_backends = pytest.mark.both_backends


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Settings:
    return make_settings(journey={"questions_per_session": 3}, limits={"max_body_bytes": 4096})


@pytest.fixture
async def ready(base_url: str) -> AsyncIterator[tuple[Visitor, str]]:
    """A visitor whose session has question 1 open for an answer."""
    async with Visitor(base_url) as visitor:
        sid = await visitor.start("ethics")
        await visitor.stream(sid, 0)
        await visitor.stream(sid, 1)
        yield visitor, sid


def snapshot(settings: Settings, sid: str) -> tuple[dict[str, int], stored.Stored]:
    """Everything stored (how many rows, and the session's own), to prove a refused request
    changed nothing."""
    return stored.counts(settings), stored.stored(settings, sid)


async def post_answer(
    visitor: Visitor, sid: str, n: int | str, body: bytes, htmx: bool
) -> httpx.Response:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if htmx:
        headers |= htmx_form(f"#error-{n}")
    return await visitor.http.post(f"/s/{sid}/steps/{n}/answer", content=body, headers=headers)


@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
@pytest.mark.parametrize(
    ("case", "status", "words"),
    [
        ("empty", 400, "empty"),
        ("whitespace", 400, "empty"),
        ("too-long", 400, "too long"),
        ("nul-byte", 400, "not text"),
        ("invalid-utf8", 400, "could not be read"),
        ("no-token", 403, "expired"),
        ("forged-token", 403, "expired"),
        ("not-yet-asked", 409, "not open"),
        ("out-of-range", 404, "no such step"),
        ("scenario-step", 409, "not open"),
        ("not-a-number", 404, "no such step"),
        ("unknown-session", 404, "not found"),
        ("malformed-session", 404, "not found"),
    ],
)
async def test_bad_answers(
    ready: tuple[Visitor, str], settings: Settings, case: str, status: int, words: str, htmx: bool
) -> None:
    visitor, sid = ready
    token = visitor.token.encode()
    n: int | str = 1
    body = b"csrf_token=" + token + b"&answer=fine"
    target = sid
    if case == "empty":
        body = b"csrf_token=" + token + b"&answer="
    elif case == "whitespace":
        body = b"csrf_token=" + token + b"&answer=%20%20%0A%09"
    elif case == "too-long":
        body = b"csrf_token=" + token + b"&answer=" + b"x" * (settings.journey.answer_max_chars + 1)
    elif case == "nul-byte":
        body = b"csrf_token=" + token + b"&answer=a%00b"
    elif case == "invalid-utf8":
        body = b"csrf_token=" + token + b"&answer=%FF%FE%FD"
    elif case == "no-token":
        body = b"answer=fine"
    elif case == "forged-token":
        body = b"csrf_token=" + b"0" * 40 + b"&answer=fine"
    elif case == "not-yet-asked":
        n = 2
    elif case == "out-of-range":
        n = 99
    elif case == "scenario-step":
        n = 0
    elif case == "not-a-number":
        n = "one"
    elif case == "unknown-session":
        target = "A" * 16
    elif case == "malformed-session":
        target = "..%2F..%2Fetc"
    before = snapshot(settings, sid)
    response = await post_answer(visitor, target, n, body, htmx)
    assert response.status_code == status, response.text[:300]
    assert words in response.text.lower()
    if htmx and status in (400, 403, 409):
        # A fragment aimed at the error slot beside the form: the typed answer is kept.
        assert response.headers["hx-retarget"].startswith("#error-")
        assert "<html" not in response.text
    assert snapshot(settings, sid) == before


@both_backends
async def test_the_same_form_sent_twice_is_answered_once(
    ready: tuple[Visitor, str], settings: Settings
) -> None:
    visitor, sid = ready
    first = await visitor.answer(sid, 1, "Only once")
    await visitor.stream(sid, 2)  # the answer opened question 2: let it finish first
    after_first = snapshot(settings, sid)
    second = await visitor.answer(sid, 1, "Only once")
    assert first.status_code == 303
    assert second.status_code == 409
    assert snapshot(settings, sid) == after_first


@both_backends
async def test_another_browser_sees_nothing_and_changes_nothing(
    ready: tuple[Visitor, str], base_url: str, settings: Settings
) -> None:
    _, sid = ready
    before = snapshot(settings, sid)
    async with Visitor(base_url) as stranger:
        await stranger.home()
        for path in (
            f"/s/{sid}",
            f"/s/{sid}/steps/0/stream",
            f"/s/{sid}/report",
            f"/s/{sid}/report.md",
        ):
            response = await stranger.http.get(path)
            assert response.status_code == 404, path
            assert sid not in response.text
        answer = await stranger.answer(sid, 1, "hijack")
        assert answer.status_code == 404
        stop = await stranger.http.post(
            f"/s/{sid}/steps/1/stop", data={"csrf_token": stranger.token}
        )
        assert stop.status_code == 404
    assert snapshot(settings, sid) == before


async def test_a_huge_body_is_refused_before_it_is_read(
    ready: tuple[Visitor, str], settings: Settings
) -> None:
    visitor, sid = ready
    before = snapshot(settings, sid)

    async def body() -> AsyncIterator[bytes]:
        yield b"csrf_token=" + visitor.token.encode() + b"&answer="
        for _ in range(2000):  # 2 MB offered, with no Content-Length to go by
            yield b"x" * 1024

    response = await visitor.http.post(
        f"/s/{sid}/steps/1/answer",
        content=body(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 413
    assert "too much" in response.text.lower()
    # A declared length over the limit is refused before a byte of the body is read.
    host, port = visitor.http.base_url.host, visitor.http.base_url.port
    stream = await anyio.connect_tcp(host, port or 80)
    async with stream:
        await stream.send(
            f"POST /s/{sid}/steps/1/answer HTTP/1.1\r\nHost: {host}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {10**9}\r\n\r\nx".encode()
        )
        with anyio.fail_after(10):
            head = await stream.receive()
    assert head.startswith(b"HTTP/1.1 413")
    assert snapshot(settings, sid) == before


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("PUT", "/sessions", 405),
        ("DELETE", "/s/x", 405),
        ("GET", "/s/x/steps/1/answer", 405),
        ("GET", "/static/../settings.toml", 404),
        ("GET", "/static/%2e%2e/%2e%2e/etc/passwd", 404),
        ("GET", "/static/..%2F..%2Fserver%2Fsettings.py", 404),
        ("GET", "/nowhere", 404),
    ],
)
async def test_methods_and_paths(base_url: str, method: str, path: str, status: int) -> None:
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.request(method, path)
    assert response.status_code == status
    assert "[server]" not in response.text and "root:" not in response.text
    assert "Traceback" not in response.text


@both_backends
@pytest.mark.parametrize("last_event_id", ["-1.5", "abc", "1.99999", "0.0", "999.3", "", "1.2.3"])
async def test_an_unusable_last_event_id_gets_a_full_snapshot(
    base_url: str, last_event_id: str
) -> None:
    async with Visitor(base_url) as visitor:
        sid = await visitor.start("career")
        full = await visitor.stream(sid, 0)
        again = await visitor.stream(sid, 0, last_event_id=last_event_id)
    assert again.status == 200
    assert again.names()[:2] == ["status", "snapshot"]
    assert again.text() == full.text()


@both_backends
async def test_an_unknown_category_and_a_bad_form_change_nothing(
    base_url: str, settings: Settings
) -> None:
    async with Visitor(base_url) as visitor:
        await visitor.home()
        before = stored.counts(settings)
        unknown = await visitor.http.post(
            "/sessions",
            data={"category": "../finance", "csrf_token": visitor.token},
            headers=htmx_form("#home-error"),
        )
        missing = await visitor.http.post("/sessions", data={"csrf_token": visitor.token})
        garbage = await visitor.http.post(
            "/sessions",
            content=b"\xff\xfe=\x00&csrf_token=" + visitor.token.encode(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    assert unknown.status_code == 400 and unknown.headers["hx-retarget"] == "#home-error"
    assert missing.status_code == 400
    assert garbage.status_code == 400
    assert stored.counts(settings) == before == {"sessions": 0, "steps": 0, "answers": 0}
