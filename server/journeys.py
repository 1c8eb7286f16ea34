"""The journey: sessions, steps opening one after another, each generated with its fallback."""

from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable

import anyio

from server import logs
from server.admission import ModelAdmission
from server.broker import Broker
from server.generators import question as question_gen
from server.generators import report as report_gen
from server.generators import scenario as scenario_gen
from server.generators.formats import live_end
from server.generators.journey import Exchange, Journey, Prompt, StepKind
from server.reasons import memory_reason
from server.render import REPORT_HEADINGS, markdown
from server.settings import Category, Settings
from server.steps import PREPARED, StepWriter
from server.store import Conflict, Session, Step, Store, Unavailable
from server.streaming import Generation, Render, Visible
from server.watchdog import Level

# How long taking the prepared text waits for it to be written, so the answer shows it.
PREPARED_WAIT_S = 5.0
# For a session whose category was removed from the settings after it started.
FALLBACK_DIMENSIONS = ("Clarity", "Courage", "Care for others", "Patience")
# A journey with no answer is reopened when its area is picked again, and leaves after this.
UNTOUCHED_S = 86400.0


class NotOpen(Exception):
    """A step that is not open yet (409), or does not exist (404)."""

    def __init__(self, message: str, *, exists: bool) -> None:
        super().__init__(message)
        self.exists = exists


class Journeys:
    """Creates sessions, opens steps, and runs each step's generation with deadlines and fallback."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store,
        generations: Broker,
        writer: StepWriter,
    ) -> None:
        self.settings = settings
        self.store = store
        self.generations = generations
        self.writer = writer

    def kind_of(self, session: Session, n: int) -> StepKind:
        if n == 0:
            return "scenario"
        return "question" if n <= session.questions_total else "report"

    async def create(self, *, owner: str, category: str) -> Session:
        session = await self.store.create_session(
            owner=owner,
            category=category,
            seed=_new_seed(),
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
        if step.status in ("done", "stopped"):
            return step
        return self.start(session, n)

    def start(self, session: Session, n: int) -> Generation:
        return self.generations.start(
            (session.id, n),
            lambda gen: self._run(gen, session, n),
            visible=self.visible(session, n),
            # Complete Markdown blocks go out rendered and sanitized, once per step.
            render=self.render(session, n),
        )

    def visible(self, session: Session, n: int) -> Visible:
        """What of the step's text may be shown: never a quick-reply tail or score lines."""
        kind = self.kind_of(session, n)
        return lambda text: live_end(kind, text)

    def render(self, session: Session, n: int) -> Render:
        """The blocks of a step's live text as its final rendering will show them: a scenario's
        leading title line, which the finished scenario drops, is never shown."""
        kind = self.kind_of(session, n)
        if kind == "report":
            return lambda blocks, since: markdown(blocks, top=REPORT_HEADINGS)
        if kind != "scenario":
            return lambda blocks, since: markdown(blocks)

        def scenario(blocks: str, since: int) -> str:
            return markdown(scenario_gen.parse(blocks) if since == 0 else blocks)

        return scenario

    async def answer(self, session: Session, n: int, text: str) -> None:
        """Commit the answer, open the next step and start writing it."""
        if not 1 <= n <= session.questions_total:
            raise Conflict(f"step {n} is not a question")
        nxt = n + 1
        await self.store.save_answer(
            session.id, n, text, open_next=(nxt, self.kind_of(session, nxt))
        )
        self.start(session, nxt)

    async def stop(self, session: Session, n: int) -> bool:
        """Stop a running step at the person's request: every viewer gets the stopped step as
        `done` (so no browser reconnects), then the model call is cancelled; the step waits
        until they ask for it again."""
        # What the step has streamed so far, read where it is written (Redis holds it when
        # another worker writes the step and nobody here watches it).
        partial = await self.generations.streamed((session.id, n))
        stopped = await self.store.stop_step(session.id, n, partial)
        if stopped:
            self.generations.end(session.id, n)
        return stopped

    async def take_prepared(self, session: Session, n: int) -> bool:
        """The person will not wait for the model: its call stops and the step falls back to
        the prepared text, with a note saying so. Only before the model has shown any text:
        once it writes, there is nothing left to wait for."""
        running = self.generations.get((session.id, n))
        if running is None or running.ended or running.text:
            return False
        running.shed(PREPARED)
        # The fallback is written at once; waiting for it lets the answer show the finished step.
        with anyio.move_on_after(PREPARED_WAIT_S):
            while not running.ended:
                await running.changed.wait()
        return True

    async def retry(self, session: Session, n: int) -> Generation | None:
        if not await self.store.reopen_step(session.id, n):
            return None
        return self.start(session, n)

    async def rewrite(self, session: Session, n: int) -> Session:
        """Write step n again, and everything after it: the answers from n on are cleared. A new
        seed gives the writers a new variation, and the cache forgets what it held for the
        session, so the step is not served the same text again."""
        await self.store.rewind(session.id, n, seed=_new_seed())
        self._leave_steps_after(session, n - 1)
        await self.writer.cache.forget(session.id, session.category)
        fresh = await self.store.session(session.id)
        assert fresh is not None
        self.start(fresh, n)
        return fresh

    async def change_answer(self, session: Session, n: int, text: str) -> None:
        """Give question n a new answer: the steps after it are written again from it."""
        if not 1 <= n <= session.questions_total:
            raise Conflict(f"step {n} is not a question")
        await self.store.rewind(session.id, n, answer=text)
        self._leave_steps_after(session, n)
        self.start(session, n + 1)

    def _leave_steps_after(self, session: Session, n: int) -> None:
        """Running generations of steps after n end; their viewers get what the step is now."""
        self.generations.end(session.id, n + 1, following=True)

    async def untouched(self, owner: str, category: str) -> Session | None:
        """A journey in this area that the owner started lately and never answered: picking the
        area again reopens it instead of piling up another."""
        since = time.time() - UNTOUCHED_S
        return await self.store.untouched_session(owner, category, since)

    async def delete(self, session: Session) -> None:
        """Remove the session, its steps, answers, cached entries and share link; its viewers
        get an empty `done` (the step leaves their page) rather than a reconnect loop."""
        await self.store.delete_session(session.id)
        self.generations.end(session.id, 0, following=True, deleted=True)
        try:
            await self.writer.cache.forget(session.id, session.category)
        except Exception:
            # The journey is gone from the database; its cache entries expire on their own.
            # A cache that is away (Redis down) must not turn the deletion into a 500.
            logs.log.warning("Cached entries of a deleted journey not removed", exc_info=True)

    async def journey(self, session: Session, upto: int) -> Journey:
        """The state step `upto` is written from: the scenario and every answer before it."""
        category = self.settings.categories.get(session.category) or Category(
            title=session.category.replace("-", " ").title(), dimensions=FALLBACK_DIMENSIONS
        )
        steps = {step.n: step for step in await self.store.steps(session.id)} if upto else {}
        answers = await self.store.answers(session.id) if upto else {}
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
            record = await self.writer.write(gen, session, prompt)
            text = _clean(prompt.kind, record.text)
            nxt = n + 1 if n == 0 else None
            await self.store.finish_step(
                session.id,
                n,
                dataclasses.replace(record, text=text),
                version=gen.version,
                open_next=(nxt, self.kind_of(session, nxt)) if nxt is not None else None,
            )
            finished = True
            gen.finish()
            if nxt is not None:
                self.start(session, nxt)
        except Conflict:
            # Stopped, deleted or taken over by another worker meanwhile (a fenced write was
            # refused): the step is someone else's now, so it is left as it stands, never
            # stopped; the viewers get what the step is now.
            self._finish_as_it_stands(gen)
        except Unavailable:
            # The database is away: nothing can be stored, stopped or released now. The step
            # stays `generating`, its viewers reconnect, and it is written again (a new
            # version) when one of them asks once the database is back.
            raise
        except Exception:
            # Not a model failure (those fall back inside the writer) but ours: a database
            # error, a category gone from the settings. The step is stopped with its
            # "write it again" button, so no browser reconnects into the same failure forever.
            logs.log.exception("Step could not be written")
            with anyio.CancelScope(shield=True):
                stopped = await self.store.stop_step(session.id, n)
                finished = stopped
                self._finish_as_it_stands(gen)
        finally:
            if not finished:
                with anyio.CancelScope(shield=True):
                    await self.store.release(session.id, n, gen.version)

    @staticmethod
    def _finish_as_it_stands(gen: Generation) -> None:
        """The viewers get what the step is now (its element is rendered as they need it)."""
        if not gen.ended:
            gen.finish()


def _new_seed() -> int:
    return random.SystemRandom().randrange(2**31)


def _clean(kind: StepKind, text: str) -> str:
    return scenario_gen.parse(text) if kind == "scenario" else text.strip()


class LoadShedder:
    """What memory pressure does to the journey: stop admitting, then shed the newest calls."""

    def __init__(
        self,
        generations: Broker,
        admission: ModelAdmission,
        *,
        trim: Callable[[], None] = lambda: None,
        shed_fraction: float = 0.5,
    ) -> None:
        self.generations = generations
        self.admission = admission
        self.trim = trim
        self.shed_fraction = shed_fraction

    def apply(self, level: Level, previous: Level) -> None:
        if level == "ok":
            self.admission.resume()
            return
        self.admission.drain(memory_reason(level))
        self.trim()  # in-memory buffers go; the disk keeps everything
        if level == "hard":
            self.shed_newest()

    def shed_newest(self) -> int:
        """Cancel the model calls of the newest generations; they fall back."""
        live = [
            gen for gen in self.generations.all() if gen.calling_model and gen.shed_reason is None
        ]
        live.sort(key=lambda gen: gen.created_at, reverse=True)
        count = max(1, int(len(live) * self.shed_fraction)) if live else 0
        for gen in live[:count]:
            gen.shed("memory_hard")
        return count

    def counts(self) -> dict[str, int]:
        return {
            "streams": self.generations.viewers(),
            "generations": len(self.generations),
            "slots_in_use": self.admission.in_use,
            "queued": self.admission.waiting,
        }
