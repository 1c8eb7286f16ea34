"""The load client: a process of its own that opens sessions and reads their streams.

`python -m bench.client SPEC.json` reads what to do from the spec, prints `MARK <name>`
lines at the moments the orchestrator samples the servers, and writes its records as JSON.
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop

from bench import people as people_mod
from bench.browser import Browser, Record, cpu_s, mark
from bench.wire import Connection, SSEReader, clock


class Client(Browser):
    """The modes a spec can ask for, each returning one record per visitor."""

    async def direct(self) -> list[Record]:
        """N chat-completion streams straight from the fake upstream, all sent at once."""
        n = self.spec["n"]
        body = json.dumps(self.spec["chat_body"]).encode()
        await self.warm_up(None, body)
        conns = await asyncio.gather(*(self.connect() for _ in range(n)))
        go = asyncio.Event()
        records: list[Record] = [{"i": i} for i in range(n)]

        async def user(i: int) -> None:
            await go.wait()
            await self.guarded(
                records[i], self.stream(conns[i], "/v1/chat/completions", records[i], body=body)
            )
            conns[i].close()

        tasks = [asyncio.create_task(user(i)) for i in range(n)]
        await self.go(go)
        await asyncio.gather(*tasks)
        return records

    async def app(self) -> list[Record]:
        """N visitors at once: POST /sessions, then the scenario's stream to its `done`."""
        n = self.spec["n"]
        people = await self.identities(min(n, self.spec.get("identities", 250)))
        await self.warm_up(people[0])
        conns = await asyncio.gather(*(self.connect() for _ in range(n)))
        go = asyncio.Event()
        records: list[Record] = [{"i": i} for i in range(n)]

        async def visit(i: int) -> None:
            who, rec, conn = people[i % len(people)], records[i], conns[i]
            rec["post"] = self.rel(clock())
            sid = await self.create_session(conn, who)
            rec["post_done"] = self.rel(clock())
            rec["sid"] = sid
            await self.stream(conn, f"/s/{sid}/steps/0/stream", rec, cookie=who.cookie)

        async def user(i: int) -> None:
            await go.wait()
            await self.guarded(records[i], visit(i))
            conns[i].close()

        tasks = [asyncio.create_task(user(i)) for i in range(n)]
        await self.go(go)
        await asyncio.gather(*tasks)
        return records

    async def idle(self) -> list[Record]:
        """N sessions whose generations wait, then N streams held open on heartbeats only."""
        n, hold_s = self.spec["n"], self.spec["hold_s"]
        people = await self.identities(min(n, self.spec.get("identities", 200)))
        records: list[Record] = [{"i": i} for i in range(n)]
        mark("baseline")
        self.t0 = clock()
        cpu0 = cpu_s()

        async def creator(k: int, workers: int) -> None:
            conn = await self.connect()
            try:
                for i in range(k, n, workers):
                    records[i]["post"] = self.rel(clock())
                    records[i]["sid"] = await self.create_session(conn, people[i % len(people)])
                    records[i]["post_done"] = self.rel(clock())
            finally:
                conn.close()

        await asyncio.gather(*(creator(k, 20) for k in range(20)))
        mark("sessions")
        await asyncio.sleep(2.0)
        opening = asyncio.Semaphore(self.spec.get("open_concurrency", 200))
        conns: list[Connection | None] = [None] * n
        readers: list[SSEReader | None] = [None] * n
        opened = [asyncio.Event() for _ in range(n)]

        async def view(i: int) -> None:
            rec = records[i]
            async with opening:
                conns[i] = conn = await Connection(self.host, self.port).open()

                def seen(reader: SSEReader) -> None:
                    readers[i] = reader
                    if reader.events >= 2:  # status and the (empty) snapshot
                        opened[i].set()

                path = f"/s/{rec['sid']}/steps/0/stream"
                task = asyncio.create_task(
                    self.stream(
                        conn, path, rec, cookie=people[i % len(people)].cookie, on_event=seen
                    )
                )
                waiter = asyncio.create_task(opened[i].wait())
                await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
            try:
                await task
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                rec["error"] = f"{type(exc).__name__}: {exc}"[:200]
                opened[i].set()

        tasks = [asyncio.create_task(view(i)) for i in range(n)]
        async with asyncio.timeout(self.timeout_s):
            for event in opened:
                await event.wait()
        open_at = clock()
        mark("streams")
        await asyncio.sleep(hold_s)
        end_at = clock()
        mark("hold_end")
        cpu1 = cpu_s()
        for i, task in enumerate(tasks):
            task.cancel()
            reader = readers[i]
            if reader is not None:
                reader.gap_until(end_at)
        await asyncio.gather(*tasks, return_exceptions=True)
        for i, conn in enumerate(conns):
            if conn is not None:
                conn.close()
            rec = records[i]
            reader = readers[i]
            if reader is not None:
                self.fill(rec, reader)
            rec["ok"] = "error" not in rec and rec.get("first_event") is not None
        self.summary = {
            "cpu_s": cpu1 - cpu0,
            "open_s": open_at - self.t0,
            "held_s": end_at - open_at,
        }
        return records

    async def cache_prime(self) -> list[Record]:
        """K sessions whose scenario and first question are written by the model and cached."""
        k = self.spec["n"]
        who = (await self.identities(1))[0]
        records: list[Record] = [{"i": i} for i in range(k)]

        async def visit(i: int) -> None:
            conn = await self.connect()
            try:
                sid = await self.create_session(conn, who)
                records[i]["sid"] = sid
                await self.stream(conn, f"/s/{sid}/steps/0/stream", records[i], cookie=who.cookie)
                step1: Record = {}
                await self.stream(conn, f"/s/{sid}/steps/1/stream", step1, cookie=who.cookie)
                records[i]["step1_done"] = step1.get("done") is not None
            finally:
                conn.close()

        await asyncio.gather(*(self.guarded(records[i], visit(i)) for i in range(k)))
        self.sessions = [
            {"sid": r.get("sid"), "cookie": who.cookie} for r in records if r.get("ok")
        ]
        return records

    async def cache_hit(self) -> list[Record]:
        """One at a time: each regenerated scenario (a cache hit), then the same finished step
        again (served from SQLite), on one keep-alive connection as a browser would."""
        sessions = self.spec["sessions"]
        records: list[Record] = []
        conn = await self.connect()
        self.t0 = clock()
        cpu0 = cpu_s()
        mark("go")
        try:
            for phase in ("hit", "replay"):
                for index, session in enumerate(sessions):
                    label = "cold" if phase == "hit" and index == 0 else phase
                    rec: Record = {"i": index, "phase": label, "sid": session["sid"]}
                    path = f"/s/{session['sid']}/steps/0/stream"
                    await self.guarded(rec, self.stream(conn, path, rec, cookie=session["cookie"]))
                    records.append(rec)
                    if not rec["ok"]:
                        conn.close()
                        conn = await self.connect()
        finally:
            conn.close()
        mark("end")
        self.summary = {"cpu_s": cpu_s() - cpu0}
        return records

    async def journeys(self) -> list[Record]:
        """N people, arriving over `ramp_s`, each doing a whole journey with think time."""
        n, ramp_s = self.spec["n"], self.spec.get("ramp_s", 0.0)
        people = await self.identities(min(n, self.spec.get("identities", 250)))
        await self.warm_up(people[0])
        go = asyncio.Event()
        records: list[Record] = [{"i": i} for i in range(n)]
        rng = random.Random(self.spec.get("seed", 11))
        starts = [ramp_s * i / n for i in range(n)]
        seeds = [rng.randrange(2**31) for _ in range(n)]

        async def person(i: int) -> None:
            await go.wait()
            await asyncio.sleep(starts[i])
            work = people_mod.journey(
                self,
                people[i % len(people)],
                records[i],
                questions=self.spec["questions"],
                think_s=tuple(self.spec["think_s"]),  # type: ignore[arg-type]
                rng=random.Random(seeds[i]),
            )
            await self.guarded(records[i], work)
            records[i]["ok"] = records[i].get("finished") is not None

        tasks = [asyncio.create_task(person(i)) for i in range(n)]
        await self.go(go)
        await asyncio.gather(*tasks)
        return records

    async def run(self) -> dict[str, Any]:
        self.summary: dict[str, Any] = {}
        modes: dict[str, Callable[[], Awaitable[list[Record]]]] = {
            "direct": self.direct,
            "app": self.app,
            "idle": self.idle,
            "cache-prime": self.cache_prime,
            "cache-hit": self.cache_hit,
            "journeys": self.journeys,
        }
        self.sessions: list[dict[str, str]] = []
        records = await modes[self.spec["mode"]]()
        if "cpu_s" not in self.summary and hasattr(self, "_cpu0"):
            mark("end")
            self.summary["cpu_s"] = cpu_s() - self._cpu0
        self.summary["wall_s"] = clock() - self.t0
        return {"summary": self.summary, "records": records, "sessions": self.sessions}


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(Path(args[0]).read_text())
    if spec["mode"] == "cache-hit":
        spec["sessions"] = json.loads(Path(spec["sessions_file"]).read_text())
    raise_fd_limit()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(Client(spec).run())
    if spec["mode"] == "cache-prime":
        Path(spec["sessions_file"]).write_text(json.dumps(result["sessions"]))
    Path(spec["out"]).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
