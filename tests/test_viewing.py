"""What one viewer's stream says while the writer writes: the status of the text it is shown."""

from __future__ import annotations

import html
from collections.abc import AsyncIterator

import anyio
import pytest

from server.events import Event
from server.generators.formats import live_end
from server.generators.journey import StepKind
from server.streaming import Generation, Generations
from server.viewing import FINISHING, follow

pytestmark = pytest.mark.anyio

# (piece written, status the viewer has by then): a question whose quick replies, and a report
# whose scores, are shown only when the step is done, written after the text that is shown.
QUESTION = [
    ("Which would you ", "writing"),
    ("choose, and why?", "writing"),
    ("\n\n**Quick rep", "writing"),  # may still become the replies' heading: held, not certain
    ("lies:**\n", FINISHING),  # the heading is whole: what is written now is not shown
    ("- Stay\n", FINISHING),
    ("- Go", FINISHING),
]
REPORT = [
    ("## Strengths\n\n", "writing"),
    # Items that look like score lines are held until the text goes on: not the scores yet.
    ("- **Courage** (7/10): you ", "writing"),
    ("said so.\n", "writing"),
    ("\nYou weigh both sides.\n", "writing"),
    ("\n## Scores\n", FINISHING),
    ("- Courage: 7/10 - you said so\n", FINISHING),
]
# What each shows live.
SHOWN = {
    "question": "Which would you choose, and why?",
    "report": "## Strengths\n\n- **Courage** (7/10): you said so.\n\nYou weigh both sides.",
}


@pytest.fixture
async def generations() -> AsyncIterator[Generations]:
    async with anyio.create_task_group() as tg:
        yield Generations(tg, grace_s=5.0)
        tg.cancel_scope.cancel()


@pytest.mark.parametrize(("kind", "script"), [("question", QUESTION), ("report", REPORT)])
async def test_the_status_says_finishing_once_the_hidden_part_is_written(
    generations: Generations, kind: StepKind, script: list[tuple[str, str]]
) -> None:
    said = [anyio.Event() for _ in script]

    async def work(gen: Generation) -> None:
        gen.set_status("writing")
        gen.start(1)
        for (piece, _), go in zip(script, said, strict=True):
            await go.wait()
            gen.append(piece)
        gen.finish("<section id='step-1'>done</section>")

    gen = generations.start(("s", 1), work, visible=lambda text: live_end(kind, text))
    events: list[Event] = []
    seen: list[tuple[str, str]] = []  # (the last piece written, the last status sent by then)

    async def watch() -> None:
        async for event in follow(gen, None, frame_s=0):
            events.append(event)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            for (piece, _), go in zip(script, said, strict=True):
                go.set()
                await anyio.wait_all_tasks_blocked()
                seen.append((piece, [e.data for e in events if e.event == "status"][-1]))
    assert seen == script
    shown = "".join(e.data for e in events if e.event in ("snapshot", "chunk"))
    assert html.unescape(shown).strip() == SHOWN[kind]
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
