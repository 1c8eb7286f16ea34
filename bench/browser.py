"""What a browser does against the app, timed: get a form token, open a session, read a stream."""

from __future__ import annotations

import asyncio
import re
import resource
from collections.abc import Awaitable, Callable
from typing import Any

from bench.wire import Connection, HttpError, SSEReader, clock, form

CSRF = re.compile(rb'name="csrf_token" value="([^"]+)"')
Record = dict[str, Any]


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def mark(name: str) -> None:
    print(f"MARK {name}", flush=True)


class Identity:
    """One browser: its cookie and its CSRF token."""

    def __init__(self, cookie: str, token: str) -> None:
        self.cookie, self.token = cookie, token


class Browser:
    """Many browsers in one process: their identities, sessions and streams, and the timings."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.host: str = spec.get("host", "127.0.0.1")
        self.port: int = spec["port"]
        self.timeout_s: float = spec.get("timeout_s", 120.0)
        self.t0 = clock()
        self.connects = asyncio.Semaphore(spec.get("connect_concurrency", 100))

    def rel(self, at: float | None) -> float | None:
        return None if at is None else at - self.t0

    async def connect(self) -> Connection:
        async with self.connects:
            return await Connection(self.host, self.port).open()

    async def identities(self, count: int) -> list[Identity]:
        async def one() -> Identity:
            conn = await self.connect()
            try:
                response = await conn.exchange("GET", "/")
            finally:
                conn.close()
            cookie = next(c.split(";", 1)[0] for c in response.set_cookies)
            found = CSRF.search(response.body)
            if response.status != 200 or found is None:
                raise HttpError(f"GET / answered {response.status} without a form token")
            return Identity(cookie, found.group(1).decode())

        return await gather_bounded([one for _ in range(count)], 50)

    async def create_session(self, conn: Connection, who: Identity) -> str:
        body = form({"category": self.spec.get("category", "finance"), "csrf_token": who.token})
        headers = {"Cookie": who.cookie, "Content-Type": "application/x-www-form-urlencoded"}
        response = await conn.exchange("POST", "/sessions", headers, body)
        if response.status != 303:
            raise HttpError(f"POST /sessions answered {response.status}")
        return response.headers["location"].removeprefix("/s/")

    async def stream(
        self,
        conn: Connection,
        path: str,
        rec: Record,
        *,
        cookie: str | None = None,
        body: bytes = b"",
        on_event: Callable[[SSEReader], None] | None = None,
    ) -> SSEReader:
        """Request a stream and read it to its end, filling `rec` with its timings."""
        direct = bool(body)
        started = clock()
        reader = SSEReader(started, direct=direct)
        headers = {"Accept": "text/event-stream"}
        if cookie:
            headers["Cookie"] = cookie
        if direct:
            headers["Content-Type"] = "application/json"
        rec["req"] = self.rel(started)
        feed = reader.feed
        if on_event is not None:

            def feed(payload: bytes, at: float) -> bool:
                done = reader.feed(payload, at)
                on_event(reader)
                return done

        try:
            method = "POST" if direct else "GET"
            response = await conn.exchange(method, path, headers, body, on_data=feed)
            rec["head"] = self.rel(response.head_at)
            rec["status"] = response.status
            rec["end"] = response.ended
            if response.status != 200:
                raise HttpError(f"stream answered {response.status}")
        finally:
            self.fill(rec, reader)
        return reader

    def fill(self, rec: Record, reader: SSEReader) -> None:
        rec.update(
            first_event=self.rel(reader.first_event_at),
            first_text=self.rel(reader.first_text_at),
            done=self.rel(reader.done_at),
            max_gap=reader.max_gap,
            events=reader.events,
            text_events=reader.text_events,
            text_bytes=reader.text_bytes,
            comments=reader.comments,
            fallback=self.rel(reader.fallback_at),
            text_after_fallback=self.rel(reader.text_after_fallback_at),
            statuses=len(reader.statuses),
            last_status=reader.statuses[-1][1] if reader.statuses else None,
        )

    async def guarded(self, rec: Record, work: Awaitable[None]) -> None:
        try:
            async with asyncio.timeout(self.timeout_s):
                await work
            rec["ok"] = rec.get("done") is not None
        except (TimeoutError, OSError, HttpError, asyncio.IncompleteReadError, ValueError) as exc:
            rec["ok"] = False
            rec["error"] = f"{type(exc).__name__}: {exc}"[:200]

    async def warm_up(self, who: Identity | None, body: bytes = b"") -> None:
        """One whole stream before the measured ones, so first-call costs (lazy imports,
        template compilation, the first upstream connection) stay out of the figures."""
        conn = await self.connect()
        rec: Record = {}
        try:
            if who is None:
                await self.stream(conn, "/v1/chat/completions", rec, body=body)
            else:
                sid = await self.create_session(conn, who)
                await self.stream(conn, f"/s/{sid}/steps/0/stream", rec, cookie=who.cookie)
        finally:
            conn.close()
        if rec.get("done") is None:
            raise HttpError(f"the warm-up stream did not finish: {rec}")

    async def go(self, go: asyncio.Event) -> None:
        mark("go")
        self.t0 = clock()
        self._cpu0 = cpu_s()
        go.set()


async def gather_bounded(factories: list[Callable[[], Awaitable[Any]]], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(factory: Callable[[], Awaitable[Any]]) -> Any:
        async with gate:
            return await factory()

    return await asyncio.gather(*(one(f) for f in factories))
