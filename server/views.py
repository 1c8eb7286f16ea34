"""What pages show: the session's steps as view models, rendered with Jinja templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from server.attempts import waiting
from server.generators import question as question_gen
from server.generators import report as report_gen
from server.generators.offline import OfflineWriter
from server.identity import Identity
from server.journeys import Journeys
from server.render import REPORT_HEADINGS, markdown, score_chart
from server.settings import Category, Settings
from server.store import Session, Step

NOT_ENOUGH = "not enough to go on"
NO_EVIDENCE = "no signal either way in the answers, so no number"
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass(frozen=True)
class Score:
    label: str
    value: int | None  # None: not enough in the answers to give a number
    reason: str
    by_model: bool = True

    @property
    def shown(self) -> str:
        return NOT_ENOUGH if self.value is None else f"{self.value}/10"


@dataclass
class StepView:
    n: int
    kind: str
    live: bool
    text: str = ""
    html: Markup = field(default_factory=Markup)
    note: str | None = None
    source: str | None = None
    replies: tuple[str, ...] = ()
    answer: str | None = None
    awaiting_answer: bool = False
    stopped: bool = False
    chart: Markup | None = None
    scores: list[Score] = field(default_factory=list)
    scores_note: str | None = None
    number: int = 0  # the question's number, 1-based
    status: str = "connecting"
    waiting: bool = False  # queued or between attempts: the prepared text can be taken now
    blocks_end: int = 0  # a live step: where the text shown formatted (`html`) ends


@dataclass
class SessionView:
    session: Session
    title: str
    category: Category | None = None
    steps: list[StepView] = field(default_factory=list)
    feedback: bool = False  # the owner said the report does not fit them

    @property
    def answered(self) -> int:
        return sum(1 for step in self.steps if step.answer is not None)

    @property
    def finished(self) -> bool:
        return any(step.kind == "report" and not step.live for step in self.steps)

    @property
    def progress(self) -> str:
        total = self.session.questions_total
        if self.finished:
            return "Report ready"
        if any(step.kind == "report" for step in self.steps):
            return "Writing your report"
        current = max((step.number for step in self.steps if step.kind == "question"), default=0)
        if current == 0:
            return "Scenario"
        return f"Question {current} of {total}"


def _outline(step: Step, answers: dict[int, str]) -> StepView:
    """A step as a page that is not showing it needs to know it: never rendered."""
    live = step.status not in ("done", "stopped")
    number = step.n if step.kind == "question" else 0
    answer = answers.get(step.n) if step.kind == "question" and step.status == "done" else None
    return StepView(step.n, step.kind, live=live, number=number, answer=answer)


def scores_note(scores: list[Score], source: str | None) -> str | None:
    """Said next to the chart when a model-written report left scores out: the chart then
    mixes in the built-in rules, and the person should know which numbers are which."""
    if source == "offline":
        return None
    ruled = [score.label for score in scores if not score.by_model]
    if not ruled:
        return None
    if len(ruled) == len(scores):
        return (
            "The model gave no scores, so every score on this chart comes from the built-in "
            "rules, which count what your answers say; read them as a rough guide."
        )
    return (
        f"The model did not score {_listed(ruled)}, so "
        f"{'that score comes' if len(ruled) == 1 else 'those scores come'} from the built-in "
        "rules, which count what your answers say; the others are the model's."
    )


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def status_words(status: str) -> str:
    """A live step's state in the words static/js/app.js's describe() gives it, for the page
    as served: what a person reads before the script runs, or without it."""
    if status == "connecting":
        return "Connecting…"
    if status == "writing":
        return "Writing…"
    if status.startswith("queued: "):
        return "In the queue: " + status.removeprefix("queued: ")
    if status.startswith("using "):
        return f"The model did not come through, so this is {status.removeprefix('using ')} instead"
    return status[:1].upper() + status[1:]


class Views:
    """Builds view models from the store and renders pages and step fragments."""

    def __init__(
        self, settings: Settings, journeys: Journeys, writer: OfflineWriter, identity: Identity
    ) -> None:
        self.settings = settings
        self.identity = identity
        self.journeys = journeys
        self.writer = writer
        self.env = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.globals["settings"] = settings
        self.env.filters["status_words"] = status_words
        self.env.globals["live_model"] = settings.uses_live_model
        self.env.globals["model_name"] = settings.llm.model
        # Asked at each render: while model calls are refused (Redis away, memory pressure)
        # the built-in writer writes every step, and the header must not say the model does.
        self.env.globals["model_refused"] = self.model_refused

    def model_refused(self) -> bool:
        return self.journeys.writer.admission.refusing is not None

    def render(self, template: str, **context: Any) -> str:
        return self.env.get_template(template).render(**context)

    async def session_view(
        self, session: Session, only: tuple[int, ...] | None = None
    ) -> SessionView:
        """Every step's view; with `only`, the other steps are outlines (number, kind, whether
        live, the answer) that are never rendered: a step's `done` element needs its own view
        and the next step's, not the whole journey formatted again for every step."""
        store = self.journeys.store
        steps = await store.steps(session.id)
        answers = await store.answers(session.id)
        category = self.settings.categories.get(session.category)
        view = SessionView(session, category.title if category else session.category, category)
        for step in steps:
            if only is None or step.n in only:
                view.steps.append(await self._step_view(session, step, answers))
            else:
                view.steps.append(_outline(step, answers))
        if view.finished:
            view.feedback = await store.has_feedback(session.id)
        return view

    async def _step_view(self, session: Session, step: Step, answers: dict[int, str]) -> StepView:
        kind = step.kind
        number = step.n if kind == "question" else 0
        if step.status == "stopped":
            view = StepView(step.n, kind, live=False, stopped=True, number=number)
            # What was written before the stop, without a half-written format tail.
            if kind == "question":
                view.html = markdown(question_gen.parse(step.text).text)
            elif kind == "report":
                view.html = markdown(report_gen.parse(step.text, ()).markdown, top=REPORT_HEADINGS)
            else:
                view.html = markdown(step.text)
            return view
        if step.status != "done":
            running = self.journeys.generations.get((session.id, step.n))
            if running is None:
                return StepView(step.n, kind, live=True, number=number)
            # As the stream shows it: the complete blocks formatted, the one being written as
            # plain text, never a format tail.
            text, blocks_end, shown = running.text, running.blocks_end, running.shown
            return StepView(
                step.n,
                kind,
                live=True,
                html=Markup(running.render(text[:blocks_end], 0)) if running.render else Markup(),
                text=text[blocks_end:shown],
                blocks_end=blocks_end,
                number=number,
                status=running.status,
                waiting=waiting(running.status),
            )
        view = StepView(
            step.n,
            kind,
            live=False,
            text=step.text,
            note=step.note,
            source=step.source,
            number=number,
        )
        if kind == "scenario":
            view.html = markdown(step.text)
        elif kind == "question":
            parsed = question_gen.parse(step.text)
            view.html = markdown(parsed.text)
            view.replies = parsed.replies
            view.answer = answers.get(step.n)
            view.awaiting_answer = view.answer is None
        else:
            body, view.scores = await self.report_parts(session, step)
            view.html = markdown(body, top=REPORT_HEADINGS)
            view.chart = score_chart([(score.label, score.value) for score in view.scores])
            view.scores_note = scores_note(view.scores, step.source)
        return view

    async def report_parts(self, session: Session, step: Step) -> tuple[str, list[Score]]:
        """The report's Markdown body and one score per dimension with its reason; a score the
        model left out is filled by the offline writer's transparent rule, never invented."""
        category = self.settings.categories.get(session.category)
        dimensions = category.dimensions if category else ()
        parsed = report_gen.parse(step.text, dimensions)
        scores = {
            dim: Score(dim, value, parsed.reasons.get(dim, ""))
            for dim, value in parsed.scores.items()
        }
        if parsed.missing:
            journey = await self.journeys.journey(session, step.n)
            for rule in self.writer.scores(journey):
                if rule.label not in scores:
                    # Where the rules find nothing either, the chart says so instead of a number.
                    reason = "by the built-in rules" if rule.score is not None else NO_EVIDENCE
                    scores[rule.label] = Score(rule.label, rule.score, reason, by_model=False)
        return parsed.markdown, [scores[dim] for dim in dimensions if dim in scores]

    async def step_fragment(self, session: Session, n: int, csrf_token: str) -> str:
        """The element of step n, followed by the element of a next step that is already open."""
        view = await self.session_view(session, only=(n, n + 1))
        parts = [step for step in view.steps if step.n in (n, n + 1)]
        return self.render("_steps.html", view=view, steps=parts, csrf_token=csrf_token)

    async def done_html(self, session: Session, n: int) -> str:
        # Only the owner's browser sees a session, so its forms carry the owner's token.
        return await self.step_fragment(session, n, self.identity.csrf_token(session.owner))

    def markdown_document(self, view: SessionView, body: str, scores: list[Score]) -> str:
        lines = [f"# Crossroads: {view.title}", ""]
        for step in view.steps:
            if step.kind == "scenario":
                lines += ["## The situation", "", step.text.strip(), ""]
            elif step.kind == "question":
                lines += [f"### Question {step.number}", "", question_gen.parse(step.text).text, ""]
                if step.answer is not None:
                    lines += ["> " + step.answer.replace("\n", "\n> "), ""]
        lines += ["## Your report", "", body.strip(), "", "## Scores", ""]
        lines += [
            f"- {score.label}: {score.shown}" + (f" ({score.reason})" if score.reason else "")
            for score in scores
        ]
        lines += ["", "_A reflection, not professional advice._", ""]
        return "\n".join(lines)
