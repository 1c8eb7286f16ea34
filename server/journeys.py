"""The journey: sessions, steps opening one after another, each generated with its fallback."""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass

import anyio

from server import logs
from server.admission import Admission, NotAdmitted
from server.generators import question as question_gen
from server.generators import report as report_gen
from server.generators import scenario as scenario_gen
from server.generators.journey import Exchange, Journey, Prompt, StepKind
from server.llm import Model, ModelError, OfflineModel
from server.settings import Settings
from server.store import Conflict, Finished, Session, Step, Store
from server.streaming import Generation, Generations

RenderDone = Callable[[Session, int], Awaitable[str]]


class NotOpen(Exception):
    """A step that is not open yet (409), or does not exist (404)."""

    def __init__(self, message: str, *, exists: bool) -> None:
        super().__init__(message)
        self.exists = exists


@dataclass(frozen=True)
class Fallback:
    reason: str
    detail: str


_SLOW = "The model was slow to answer"
_DOWN = "The model could not be reached"
NOTES = {
    "first_token_timeout": _SLOW,
    "chunk_timeout": _SLOW,
    "step_timeout": _SLOW,
    "rate_limited": "The model is busy right now",
    "upstream_status": _DOWN,
    "connection_error": _DOWN,
    "malformed_chunk": "The model sent a broken answer",
    "incomplete_stream": "The model stopped mid-answer",
    "queue_timeout": "Many people are writing right now",
    "memory_soft": "The server is short of memory",
    "memory_hard": "The server is short of memory",
}


def fallback_note(kind: StepKind, reason: str) -> str:
    cause = NOTES.get(reason, "The model was unavailable")
    what = "a prepared scenario" if kind == "scenario" else "our built-in writer's version"
    return f"{cause}, so this is {what}."


def fallback_status(kind: StepKind) -> str:
    return "using a prepared scenario" if kind == "scenario" else "using the built-in writer"


class Journeys:
    """Creates sessions, opens steps, and runs each step's generation with deadlines and fallback."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        generations: Generations,
        model: Model,
        offline: OfflineModel,
        admission: Admission,
        render_done: RenderDone,
    ) -> None:
        self.settings = settings
        self.store = store
        self.generations = generations
        self.model = model
        self.offline = offline
        self.fallback_model = offline.at_once()
        self.admission = admission
        self.render_done = render_done

    def kind_of(self, session: Session, n: int) -> StepKind:
        if n == 0:
            return "scenario"
        return "question" if n <= session.questions_total else "report"

    async def create(self, *, owner: str, category: str) -> Session:
        session = await self.store.create_session(
            owner=owner,
            category=category,
            seed=random.SystemRandom().randrange(2**31),
            questions_total=self.settings.journey.questions_per_session,
        )
        self.start(session, 0)
        return session

    async def ensure(self, session: Session, n: int) -> Generation | Step:
        """The live generation of an open step (started if needed), or the finished step."""
        if not 0 <= n <= session.report_step:
            raise NotOpen(f"there is no step {n}", exists=False)
        running = self.generations.get((session.id, n))
        if running is not None and not running.ended:
            running.touch()
            return running
        step = await self.store.step(session.id, n)
        if step is None:
            raise NotOpen(f"step {n} is not open yet", exists=True)
        if step.status == "done":
            return step
        return self.start(session, n)

    def start(self, session: Session, n: int) -> Generation:
        return self.generations.start((session.id, n), lambda gen: self._run(gen, session, n))

    async def answer(self, session: Session, n: int, text: str) -> None:
        """Commit the answer, open the next step and start writing it."""
        if not 1 <= n <= session.questions_total:
            raise Conflict(f"step {n} is not a question")
        nxt = n + 1
        await self.store.save_answer(
            session.id, n, text, open_next=(nxt, self.kind_of(session, nxt))
        )
        self.start(session, nxt)

    async def journey(self, session: Session, upto: int) -> Journey:
        """The state step `upto` is written from: the scenario and every answer before it."""
        category = self.settings.categories[session.category]
        steps = {step.n: step for step in await self.store.steps(session.id)}
        answers = await self.store.answers(session.id)
        scenario = steps[0].text if 0 in steps and upto > 0 else ""
        exchanges = tuple(
            Exchange(question_gen.parse(steps[k].text).text, answers[k])
            for k in range(1, min(upto, session.questions_total + 1))
            if k in steps and k in answers
        )
        return Journey(
            category_id=session.category,
            category_title=category.title,
            dimensions=category.dimensions,
            seed=session.seed,
            questions_total=session.questions_total,
            scenario=scenario,
            exchanges=exchanges,
        )

    def prompt(self, journey: Journey, n: int) -> Prompt:
        llm = self.settings.llm
        kind = journey.kind_of(n)
        if kind == "scenario":
            return scenario_gen.build(journey, llm.max_tokens_scenario)
        if kind == "question":
            return question_gen.build(journey, n, llm.max_tokens_question)
        return report_gen.build(journey, n, llm.max_tokens_report)

    async def _run(self, gen: Generation, session: Session, n: int) -> None:
        logs.session_id.set(session.id)
        logs.step.set(n)
        try:
            version = await self.store.begin_generation(session.id, n)
        except Conflict:
            return
        gen.start(version)
        finished = False
        try:
            prompt = self.prompt(await self.journey(session, n), n)
            record = await self._generate(gen, session, n, prompt)
            text = _clean(prompt.kind, record.text)
            nxt = n + 1 if n == 0 else None
            await self.store.finish_step(
                session.id,
                n,
                dataclasses.replace(record, text=text),
                open_next=(nxt, self.kind_of(session, nxt)) if nxt is not None else None,
            )
            finished = True
            gen.note = record.note
            gen.finish(await self.render_done(session, n))
            if nxt is not None:
                self.start(session, nxt)
        finally:
            if not finished:
                with anyio.CancelScope(shield=True):
                    await self.store.release(session.id, n)

    async def _generate(
        self, gen: Generation, session: Session, n: int, prompt: Prompt
    ) -> Finished:
        started = time.monotonic()
        stats = _Stats(started)
        if not self.model.live:
            gen.set_status("writing")
            await _pump(self.model, prompt, gen, stats, deadline=started + 3600)
            return stats.finished(gen.text, source="offline", model=self.offline.name)
        try:
            async with self.admission.slot(lambda ahead: _queued(gen, ahead)):
                slot_at = time.monotonic()
                deadline = slot_at + self.settings.limits.worker_time_limit_s
                gen.set_status("writing")
                await _pump(self.model, prompt, gen, stats, deadline=deadline)
                return stats.finished(gen.text, source="model", model=self.model.name)
        except ModelError as error:
            failure = Fallback(error.reason, error.detail)
            stats.attempts = error.attempts
        except NotAdmitted as refused:
            failure = Fallback(refused.reason, "no slot for the model call")
        logs.event(
            logging.WARNING,
            "Request terminated to prevent worker timeout",
            reason=failure.reason,
            detail=failure.detail,
            kind=prompt.kind,
            elapsed_s=round(time.monotonic() - started, 3),
            first_chunk_s=stats.first_chunk_s,
            chunks=stats.chunks,
            shown_chars=len(gen.text),
        )
        return await self._fall_back(gen, session, n, prompt, failure, stats)

    async def _fall_back(
        self,
        gen: Generation,
        session: Session,
        n: int,
        prompt: Prompt,
        failure: Fallback,
        stats: _Stats,
    ) -> Finished:
        gen.set_status(fallback_status(prompt.kind))
        text = await _collect(self.fallback_model, prompt)
        if gen.text:
            # Text was already shown: replace it under a new version, never splice.
            gen.replace(text, await self.store.bump_version(session.id, n))
        else:
            gen.append(text)
        return Finished(
            text=text,
            source="offline",
            model=self.offline.name,
            note=fallback_note(prompt.kind, failure.reason),
            reason=failure.reason,
            first_chunk_s=stats.first_chunk_s,
            duration_s=time.monotonic() - stats.started,
            chunks=stats.chunks,
            attempts=stats.attempts,
        )


class _Stats:
    def __init__(self, started: float) -> None:
        self.started = started
        self.first_chunk_s: float | None = None
        self.chunks = 0
        self.attempts = 1

    def finished(self, text: str, *, source: str, model: str) -> Finished:
        return Finished(
            text=text,
            source=source,
            model=model,
            first_chunk_s=self.first_chunk_s,
            duration_s=time.monotonic() - self.started,
            chunks=self.chunks,
            attempts=self.attempts,
        )


async def _pump(
    model: Model, prompt: Prompt, gen: Generation, stats: _Stats, *, deadline: float
) -> None:
    async with aclosing(model.stream(prompt, deadline=deadline)) as deltas:
        async for delta in deltas:
            if delta.text:
                if stats.first_chunk_s is None:
                    stats.first_chunk_s = time.monotonic() - stats.started
                stats.chunks += 1
                gen.append(delta.text)


async def _collect(model: OfflineModel, prompt: Prompt) -> str:
    parts = []
    async with aclosing(model.stream(prompt, deadline=time.monotonic() + 60)) as deltas:
        async for delta in deltas:
            parts.append(delta.text)
    return "".join(parts)


def _queued(gen: Generation, ahead: int) -> None:
    gen.set_status(f"queued: {ahead} ahead of you" if ahead else "queued: you are next")


def _clean(kind: StepKind, text: str) -> str:
    return scenario_gen.parse(text) if kind == "scenario" else text.strip()
