"""A visitor driving the HTTP surface the way a browser would, with its own cookie jar."""

from __future__ import annotations

import re

import httpx

from tests import sse

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def htmx_form(slot: str) -> dict[str, str]:
    """The headers htmx sends for a form whose markup names the error slot `slot`
    (test_routes checks that every form on every page names one that exists there)."""
    return {"HX-Request": "true", "X-Error-Slot": slot}


class Visitor:
    def __init__(self, base_url: str, *, max_connections: int = 100) -> None:
        # 100 is httpx's own default; a crowd of streams on one visitor needs more.
        self.http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(30.0),
            follow_redirects=False,
            limits=httpx.Limits(max_connections=max_connections),
        )
        self.token = ""

    async def __aenter__(self) -> Visitor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def home(self) -> httpx.Response:
        response = await self.http.get("/")
        match = CSRF.search(response.text)
        if match:
            self.token = match.group(1)
        return response

    async def start(self, category: str = "finance") -> str:
        if not self.token:
            await self.home()
        response = await self.http.post(
            "/sessions", data={"category": category, "csrf_token": self.token}
        )
        assert response.status_code == 303, response.text
        return response.headers["location"].removeprefix("/s/")

    async def stream(self, sid: str, n: int, **kwargs: object) -> sse.Stream:
        return await sse.read(self.http, f"/s/{sid}/steps/{n}/stream", **kwargs)  # type: ignore[arg-type]

    async def answer(self, sid: str, n: int, text: str, *, htmx: bool = False) -> httpx.Response:
        headers = htmx_form(f"#error-{n}") if htmx else {}
        return await self.http.post(
            f"/s/{sid}/steps/{n}/answer",
            data={"answer": text, "csrf_token": self.token},
            headers=headers,
        )

    async def finish(
        self, sid: str, questions: int, answers: list[str] | None = None
    ) -> sse.Stream:
        """Stream every step and answer every question; return the report's stream."""
        await self.stream(sid, 0)
        for n in range(1, questions + 1):
            stream = await self.stream(sid, n)
            assert stream.names()[-1] == "done", stream.names()
            text = answers[n - 1] if answers else f"Answer {n}: because it matters to me."
            response = await self.answer(sid, n, text)
            assert response.status_code == 303, response.text
        return await self.stream(sid, questions + 1)
