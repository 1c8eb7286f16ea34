"""The journeys case's load: people doing whole journeys, one keep-alive connection each.

Each person opens a session, reads the scenario to its `done`, then for every question reads
it, thinks for a while and types an answer, and finally reads the report. A step's first text
is timed from the moment it opened as the person sees it: POST /sessions for the scenario, the
scenario's `done` for the first question (it opens then), the answer's POST for the rest.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Any

from bench.wire import Connection, HttpError, clock, form

if TYPE_CHECKING:
    from bench.browser import Browser, Identity

# Typed answers of the lengths people write: a few words to a short paragraph.
ANSWERS = (
    "I would stay. The team needs me right now and leaving mid-project feels like breaking a promise.",
    "Honestly I'd ask for more time before deciding anything.",
    "Talk to her first. I can't decide something this big about us without hearing what she thinks, "
    "even if I already suspect what she'll say.",
    "Take the offer.",
    "I'd probably say no, but kindly, and offer to help in a smaller way that doesn't put our savings at risk.",
    "Go. I've spent years telling myself the timing is wrong and it never gets any better.",
    "Split the difference: accept for six months and review it together at the end, with a clear way out "
    "for both of us if it isn't working. That feels fairer than an all-or-nothing answer.",
    "Keep the money where it is and stop checking it every morning.",
    "I'd tell him the truth, even though it will hurt, because finding out later would hurt more.",
    "Wait until after the exams, then decide as a family.",
)


async def journey(
    client: Browser,
    who: Identity,
    rec: dict[str, Any],
    *,
    questions: int,
    think_s: tuple[float, float],
    rng: random.Random,
) -> None:
    conn: Connection = await client.connect()
    steps: list[dict[str, Any]] = []
    rec["steps"] = steps
    try:
        opened = clock()
        rec["post"] = client.rel(opened)
        sid = await client.create_session(conn, who)
        rec["sid"] = sid
        for n in range(questions + 2):  # the scenario, the questions, the report
            step: dict[str, Any] = {"n": n, "opened": client.rel(opened)}
            steps.append(step)
            await client.stream(conn, f"/s/{sid}/steps/{n}/stream", step, cookie=who.cookie)
            if step.get("done") is None:
                raise HttpError(f"step {n} ended without done")
            opened = clock()
            if 1 <= n <= questions:
                await asyncio.sleep(rng.uniform(*think_s))
                opened = clock()
                text = rng.choice(ANSWERS)
                if conn.closed:  # the server closes a connection idle past its keep-alive
                    conn = await client.connect()
                if not await answer(conn, who, sid, n, text):
                    # Closed as the request went out (keep-alive expiry): a browser sends
                    # it again on a new connection, and so do we.
                    conn.close()
                    conn = await client.connect()
                    if not await answer(conn, who, sid, n, text):
                        raise HttpError(f"POST answer {n}: connection closed twice")
        rec["finished"] = client.rel(clock())
    finally:
        conn.close()


async def answer(conn: Connection, who: Identity, sid: str, n: int, text: str) -> bool:
    """True once answered; False when the connection closed before any answer came."""
    body = form({"answer": text, "csrf_token": who.token})
    headers = {"Cookie": who.cookie, "Content-Type": "application/x-www-form-urlencoded"}
    try:
        response = await conn.exchange("POST", f"/s/{sid}/steps/{n}/answer", headers, body)
    except HttpError:
        return False  # closed before the request could go out
    if response.status == 0:
        return False
    if response.status != 303:
        raise HttpError(f"POST answer {n} answered {response.status}")
    return True
