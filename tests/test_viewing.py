"""What one viewer's stream says while the writer writes: the status of the text it is shown."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from server.events import Event
from server.generators.formats import live_end
from server.streaming import Generation, Generations
from server.viewing import FINISHING, follow

pytestmark = pytest.mark.anyio

# A question whose quick replies (hidden until the step is done) are written after its text.
PIECES = [
    "Which would you ",
    "choose, and why?",
    "\n\n**Quick rep",  # could still become the replies' heading: held, but nothing certain yet
    "lies:**\n",  # the heading is whole: what is written now is not shown
    "- Stay\n",
    "- Go",
]


@pytest.fixture
async def generations() -> AsyncIterator[Generations]:
    async with anyio.create_task_group() as tg:
        yield Generations(tg, grace_s=5.0)
        tg.cancel_scope.cancel()


async def test_the_status_says_finishing_while_only_hidden_text_is_written(
    generations: Generations,
) -> None:
    said = [anyio.Event() for _ in PIECES]

    async def work(gen: Generation) -> None:
        gen.set_status("writing")
        gen.start(1)
        for piece, go in zip(PIECES, said, strict=True):
            await go.wait()
            gen.append(piece)
        gen.finish("<section id='step-1'>done</section>")

    gen = generations.start(("s", 1), work, visible=lambda text: live_end("question", text))
    events: list[Event] = []
    seen: list[tuple[str, str]] = []  # (the last piece written, the last status sent by then)

    async def watch() -> None:
        async for event in follow(gen, None, frame_s=0):
            events.append(event)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            for piece, go in zip(PIECES, said, strict=True):
                go.set()
                await anyio.wait_all_tasks_blocked()
                status = [e.data for e in events if e.event == "status"][-1]
                seen.append((piece, status))
    assert seen == [
        ("Which would you ", "writing"),
        ("choose, and why?", "writing"),
        ("\n\n**Quick rep", "writing"),
        ("lies:**\n", FINISHING),
        ("- Stay\n", FINISHING),
        ("- Go", FINISHING),
    ]
    shown = "".join(e.data for e in events if e.event in ("snapshot", "chunk"))
    assert shown.strip() == "Which would you choose, and why?"
    assert events[-1].event == "done"


async def test_a_step_without_a_hidden_part_only_ever_says_writing(
    generations: Generations,
) -> None:
    async def work(gen: Generation) -> None:
        gen.set_status("writing")
        gen.start(1)
        for line in ("You stand at a fork.\n\n", "- One way\n", "- The other\n\n", "Night falls."):
            gen.append(line)
            await anyio.lowlevel.checkpoint()
        gen.finish("<section id='step-0'>done</section>")

    gen = generations.start(("s", 0), work)  # a scenario: all of it is shown
    with anyio.fail_after(10):
        events = [event async for event in follow(gen, None, frame_s=0)]
    assert {e.data for e in events if e.event == "status"} <= {"connecting", "writing"}
