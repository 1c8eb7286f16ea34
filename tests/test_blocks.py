"""Markdown blocks while a text streams: where complete blocks end, and the `blocks` events
that carry them formatted, once per step, to every viewer."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator

import anyio
import anyio.lowlevel
import pytest

from server.blocks import complete_end
from server.events import Event
from server.render import markdown
from server.streaming import Generation, Generations
from server.viewing import follow


@pytest.mark.parametrize(
    ("text", "complete"),
    [
        ("Hello", ""),
        ("Hello\n", ""),  # the next line may continue the paragraph
        ("Hello\nworld", ""),
        ("Hello\n\n", "Hello\n\n"),
        ("Para one\n\nPara tw", "Para one\n\n"),
        ("## Summary\nYou", "## Summary\n"),
        ("## Summ", ""),
        ("- a\n- b", "- a\n"),
        ("- a\n  still a\n- b", "- a\n  still a\n"),
        ("- a\n-", ""),  # a lone "-" may become a rule or an item: wait
        ("Strengths:\n- one\n- tw", "Strengths:\n- one\n"),
        ("1. first\n2. sec", "1. first\n"),
        ("Text\n## Next", "Text\n"),
        ("```\ncode\n\nmore\n```\nafter", "```\ncode\n\nmore\n```\n"),
        ("```\ncode\n\nmore", ""),  # nothing ends inside an open fence
    ],
)
def test_where_complete_blocks_end(text: str, complete: str) -> None:
    assert text[: complete_end(text)] == complete


def test_scanning_on_from_an_earlier_end_finds_the_same_end() -> None:
    text = "## Summary\n\nYou weigh things.\n\n- **Ambition** (5/10)\n- Care\n\nThe e"
    for cut in range(len(text) + 1):
        earlier = complete_end(text[:cut])
        assert complete_end(text, earlier) == complete_end(text)


REPORT = (
    "## Summary\n\nYou weigh things <carefully> & slowly.\n\n## Strengths\n\n"
    "- You **listen** first.\n- You ask why.\n\nA last paragraph still being wri"
)


def shown_as(events: list[Event]) -> tuple[str, int, str]:
    """What a browser shows: the formatted blocks, where they end, and the text so far."""
    blocks, end, text = "", 0, ""
    for event in events:
        if event.event == "snapshot":
            text = html.unescape(event.data)
        elif event.event == "chunk":
            text += html.unescape(event.data)
        elif event.event == "blocks":
            head, _, body = event.data.partition("\n")
            start, stop = (int(part) for part in head.split())
            assert start in (0, end), "a blocks event starts where the last one ended, or at 0"
            blocks = body if start == 0 else blocks + body
            end = stop
    return blocks, end, text


def normalized(markup: str) -> str:
    """Adjacent lists rendered block by block join into one list in the browser (app.js)."""
    return re.sub(r"</(ul|ol)>\s*<\1>", "", markup).replace("\n", "")


@pytest.fixture
async def generations() -> AsyncIterator[Generations]:
    async with anyio.create_task_group() as tg:
        yield Generations(tg, grace_s=5.0)
        tg.cancel_scope.cancel()


@pytest.mark.anyio
async def test_viewers_get_each_block_formatted_once_it_is_complete(
    generations: Generations,
) -> None:
    step = anyio.Event()
    pieces = [REPORT[i : i + 7] for i in range(0, len(REPORT), 7)]

    async def work(gen: Generation) -> None:
        gen.start(1)
        for piece in pieces:
            await step.wait()
            gen.append(piece)
        gen.finish("<section id='step-0'>done</section>")

    gen = generations.start(("s", 0), work, render=lambda blocks, since: markdown(blocks))
    early: list[Event] = []
    late: list[Event] = []

    async def watch(into: list[Event]) -> None:
        async for event in follow(gen, None, frame_s=0):
            into.append(event)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(watch, early)
            await gen.ready.wait()
            step.set()  # the writer runs to the end, the viewer frame by frame
            while not gen.ended:
                if gen.blocks_end > 40 and not late:
                    late.append(Event("joined", ""))
                    tg.start_soon(watch, late)
                await anyio.lowlevel.checkpoint()
    end = REPORT.index("A last")
    for events in (early, late[1:]):
        blocks, blocks_to, text = shown_as(events)
        assert text == REPORT
        assert blocks_to == end
        assert normalized(blocks) == normalized(str(markdown(REPORT[:end])))
        assert "&lt;carefully&gt; &amp;" in blocks  # escaped by the renderer, never raw HTML
        assert all(event.id is None for event in events if event.event == "blocks")
    # Several blocks events for the viewer that watched from the start, each with new blocks.
    assert sum(event.event == "blocks" for event in early) >= 3


@pytest.mark.anyio
async def test_without_a_renderer_no_blocks_are_sent(generations: Generations) -> None:
    async def work(gen: Generation) -> None:
        gen.start(1)
        gen.append(REPORT)
        gen.finish("done")

    gen = generations.start(("s", 1), work)
    with anyio.fail_after(10):
        events = [event async for event in follow(gen, None, frame_s=0)]
    assert "blocks" not in [event.event for event in events]
    assert gen.blocks_end == 0
