"""A viewer resuming on a worker whose mirror of the step is behind the writer it read from,
against real Redis and PostgreSQL (workers in one test process, as in test_broker_redis.py)."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from server.events import Event
from tests.test_broker_redis import Writer, _read, _until, _writing, workers

pytestmark = pytest.mark.anyio


async def test_a_resume_on_a_mirror_that_lags_its_writer_gets_only_the_missing_text(
    redis_url: str, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with workers(redis_url, postgres_url, 2) as (a, b):
        sid, writer, gen_a = await _writing(a, "Hello ")
        gen_b = b.broker.start((sid, 0), Writer(b.store, sid))
        await _until(lambda: gen_b.text == "Hello ")
        # B's reader falls behind (a busy worker): what A publishes now reaches B later.
        reader = b.broker._reader
        read = reader._read
        may_read, holding = anyio.Event(), anyio.Event()

        async def held(cursor: dict[str, str]) -> Any:
            holding.set()
            await may_read.wait()
            return await read(cursor)

        monkeypatch.setattr(reader, "_read", held)
        with anyio.fail_after(5):
            await holding.wait()  # the XREAD under way returned: the next one waits
        writer.give("there")
        seen_on_a: list[Event] = []
        with anyio.move_on_after(0.3):
            await _read(gen_a, None, seen_on_a)
        last_id = [e.id for e in seen_on_a if e.id][-1]
        assert last_id == f"{writer.versions[0]}.11" and gen_b.text == "Hello "
        resumed: list[Event] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(_read, gen_b, last_id, resumed)
            await _until(lambda: gen_b.viewers == 1)
            await anyio.sleep(0.2)
            may_read.set()  # B catches up
            await _until(lambda: gen_b.text == "Hello there")
            writer.give(", friend", "<end>")
    text_events = [e for e in resumed if e.event in ("snapshot", "chunk")]
    assert [e.event for e in text_events] == ["chunk"] * len(text_events)
    assert "".join(e.data for e in text_events) == ", friend"
    assert resumed[-1] == Event("done", "<p>done</p>")
