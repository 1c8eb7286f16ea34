"""Writing one step: cache first, then a slot and the model, else the fallback tiers."""

from __future__ import annotations

import logging
import time
from contextlib import aclosing
from dataclasses import dataclass

from server import checks, logs
from server.admission import ModelAdmission, NotAdmitted
from server.attempts import StepWatcher
from server.cache import ResponseCache, request_key
from server.generators.journey import Prompt, StepKind
from server.metrics import Metrics
from server.model import Model, ModelError, OfflineModel
from server.reasons import CAUSES, FailureReason
from server.settings import Settings
from server.store import Finished, Session, Store
from server.streaming import Generation
from server.watch import UNWATCHED, Watcher

PREPARED: FailureReason = "chose_prepared"  # the person took the prepared text
SERVED_BY = {
    "cache": "the text written earlier for exactly the same request",
    "pool": "a scenario the model wrote earlier for another visitor",
}


def fallback_note(kind: StepKind, reason: FailureReason, tier: str) -> str:
    cause = CAUSES[reason]
    if tier in SERVED_BY:
        return f"{cause}, so this is {SERVED_BY[tier]}."
    what = "a prepared scenario" if kind == "scenario" else "our built-in writer's version"
    return f"{cause}, so this is {what}."


def fallback_status(kind: StepKind) -> str:
    return "using a prepared scenario" if kind == "scenario" else "using the built-in writer"


@dataclass(frozen=True)
class Failure:
    reason: FailureReason
    detail: str
    attempts: int = 0


class _Tally:
    """Counts a step's chunks and times it; the one place its record is built when it ends."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.first_chunk_s: float | None = None
        self.chunks = 0
        self.finish_reason: str | None = None
        self.attempts = 1

    def count(self) -> None:
        if self.first_chunk_s is None:
            self.first_chunk_s = time.monotonic() - self.started
        self.chunks += 1

    def record(
        self,
        text: str,
        *,
        source: str,
        model: str,
        attempts: int = 1,
        note: str | None = None,
        reason: FailureReason | None = None,
    ) -> Finished:
        return Finished(
            text=text,
            source=source,
            model=model,
            note=note,
            reason=reason,
            first_chunk_s=self.first_chunk_s,
            duration_s=time.monotonic() - self.started,
            chunks=self.chunks,
            attempts=attempts,
        )


class StepWriter:
    """Writes a step's text into its generation, and says where the text came from."""

    def __init__(
        self,
        settings: Settings,
        *,
        model: Model,
        offline: OfflineModel,
        admission: ModelAdmission,
        cache: ResponseCache,
        store: Store,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.model = model
        self.offline = offline
        self.fallback_model = offline.at_once()
        self.admission = admission
        self.cache = cache
        self.store = store
        self.metrics = metrics

    async def write(self, gen: Generation, session: Session, prompt: Prompt) -> Finished:
        tally = _Tally()
        if not self.model.live:
            gen.set_status("writing")
            await _pump(self.model, prompt, gen, tally, deadline=tally.started + 3600)
            return self._done(tally.record(gen.text, source="offline", model=self.offline.name))
        key = request_key(prompt, self.model.name, session.id)
        cached = await self._cached(key)
        if cached is not None:
            # A hit is delivered at once: no slot, no pacing.
            gen.append(cached)
            tally.count()
            return self._done(tally.record(cached, source="cache", model=self.model.name))
        failure = await self._from_model(gen, prompt, tally)
        if failure is None:
            verdict = await self._checked(gen, session, prompt, tally)
            if verdict.reason is None:
                await self._remember(key, session, prompt, verdict.text)
                finished = tally.record(
                    verdict.text,
                    source="model",
                    model=self.model.name,
                    note=verdict.note,
                    attempts=tally.attempts,
                )
                return self._done(finished)
            failure = Failure(verdict.reason, verdict.detail, tally.attempts)
        return await self._fall_back(gen, session, prompt, key, failure, tally)

    async def _checked(
        self, gen: Generation, session: Session, prompt: Prompt, tally: _Tally
    ) -> checks.Verdict:
        """The finished text checked before it counts as the model's (server/checks.py)."""
        verdict = checks.check(prompt, gen.text, tally.finish_reason)
        self.metrics.step_checks.labels(prompt.kind, verdict.outcome).inc()
        if verdict.reason is not None:
            logs.event(
                logging.WARNING,
                "Model step failed its checks",
                reason=verdict.reason,
                detail=verdict.detail,
                kind=prompt.kind,
                finish_reason=tally.finish_reason,
                chars=len(gen.text),
            )
        elif verdict.text != gen.text:
            logs.event(
                logging.INFO,
                "Model step trimmed at its token cap",
                kind=prompt.kind,
                max_tokens=prompt.max_tokens,
                dropped_chars=len(gen.text) - len(verdict.text),
            )
            # The unfinished end was shown: replace the text under a new version, never splice.
            gen.replace(
                verdict.text, await self.store.bump_version(session.id, prompt.step, gen.version)
            )
        return verdict

    async def _from_model(self, gen: Generation, prompt: Prompt, tally: _Tally) -> Failure | None:
        """None when the model wrote the whole step; otherwise why it did not."""
        watcher: StepWatcher | None = None
        try:
            with gen.model_scope:

                def queued(ahead: int) -> None:
                    _queued(gen, ahead, self.admission.slots)

                async with self.admission.slot(queued) as slot:
                    deadline = time.monotonic() + self.settings.limits.worker_time_limit_s
                    gen.set_status("writing")
                    gen.calling_model = True
                    watcher = StepWatcher(
                        gen, prompt.kind, admission=self.admission, slot=slot, metrics=self.metrics
                    )
                    try:
                        await _pump(
                            self.model, prompt, gen, tally, deadline=deadline, watcher=watcher
                        )
                    finally:
                        gen.calling_model = False
                        tally.attempts = watcher.attempts
                    return None
            reason = gen.shed_reason or "memory_hard"
            detail = "the person took the prepared text" if reason == PREPARED else "shed"
            return Failure(reason, detail, _attempts(watcher))
        except ModelError as error:
            return Failure(error.reason, error.detail, error.attempts)
        except NotAdmitted as refused:
            return Failure(refused.reason, "no slot for the model call", _attempts(watcher))
        except Exception as error:
            # A fault the model layer did not classify must still end in fallback text: raised
            # from here it would end the generation without a `done` (and its task group).
            logs.log.exception("Model call failed unexpectedly")
            return Failure("model_error", f"{type(error).__name__}: {str(error)[:200]}")

    async def _fall_back(
        self,
        gen: Generation,
        session: Session,
        prompt: Prompt,
        key: str,
        failure: Failure,
        tally: _Tally,
    ) -> Finished:
        logs.event(
            logging.INFO if failure.reason == PREPARED else logging.WARNING,
            "Prepared text taken instead of waiting"
            if failure.reason == PREPARED
            else "Request terminated to prevent worker timeout",
            reason=failure.reason,
            detail=failure.detail,
            kind=prompt.kind,
            attempts=failure.attempts,
            elapsed_s=round(time.monotonic() - tally.started, 3),
            first_chunk_s=None if tally.first_chunk_s is None else round(tally.first_chunk_s, 3),
            chunks=tally.chunks,
            shown_chars=len(gen.text),
        )
        if failure.reason != PREPARED:
            self.metrics.terminations.labels(failure.reason).inc()
        gen.set_status(fallback_status(prompt.kind))
        tier, text = await self._fallback_text(session, prompt, key)
        self.metrics.fallbacks.labels(failure.reason, tier).inc()
        if gen.text:
            # Text was already shown: replace it under a new version, never splice.
            gen.replace(text, await self.store.bump_version(session.id, prompt.step, gen.version))
        else:
            gen.append(text)
        finished = tally.record(
            text,
            source=tier,
            model=self.offline.name if tier == "offline" else self.model.name,
            note=fallback_note(prompt.kind, failure.reason, tier),
            reason=failure.reason,
            attempts=failure.attempts,
        )
        return self._done(finished, outcome="fallback")

    async def _fallback_text(self, session: Session, prompt: Prompt, key: str) -> tuple[str, str]:
        """Cache, then the scenario pool (scenarios only), then the offline writer. The cache
        missed before the model was asked; only what this process stored since can hit now."""
        cached = await self.cache.recent(key)
        if cached is not None:
            return "cache", cached
        if prompt.kind == "scenario":
            try:
                pooled = await self.cache.from_pool(session.category, session.id)
            except Exception:
                _cache_failed("pool lookup")
                pooled = None
            if pooled is not None:
                return "pool", pooled
        return "offline", await _collect(self.fallback_model, prompt)

    async def _cached(self, key: str) -> str | None:
        """The cached text, or None; a failing cache is a miss, never a failed step."""
        try:
            text = await self.cache.get(key)
        except Exception:
            _cache_failed("lookup")
            text = None
        self.metrics.cache_lookups.labels("hit" if text is not None else "miss").inc()
        return text

    async def _remember(self, key: str, session: Session, prompt: Prompt, text: str) -> None:
        """Best effort: the text is already written, a full disk must not lose it."""
        try:
            ttl_s = self.settings.storage.session_ttl_days * 86400
            await self.cache.put(key, text, tag=session.id, expire_s=ttl_s)
            if prompt.kind == "scenario":
                await self.cache.add_to_pool(session.category, session.id, text)
        except Exception:
            _cache_failed("store")

    def _done(self, finished: Finished, outcome: str = "complete") -> Finished:
        self.metrics.generations.labels(finished.source, outcome).inc()
        if finished.first_chunk_s is not None:
            self.metrics.first_chunk.labels(finished.source).observe(finished.first_chunk_s)
        return finished


async def _pump(
    model: Model,
    prompt: Prompt,
    gen: Generation,
    tally: _Tally,
    *,
    deadline: float,
    watcher: Watcher = UNWATCHED,
) -> None:
    async with aclosing(model.stream(prompt, deadline=deadline, watcher=watcher)) as deltas:
        async for delta in deltas:
            if delta.text:
                gen.set_status("writing")  # after a retry's status, once text comes
                gen.append(delta.text)
                tally.count()
            if delta.finish_reason:
                tally.finish_reason = delta.finish_reason


async def _collect(model: OfflineModel, prompt: Prompt) -> str:
    parts = []
    async with aclosing(model.stream(prompt, deadline=time.monotonic() + 60)) as deltas:
        async for delta in deltas:
            parts.append(delta.text)
    return "".join(parts)


def _cache_failed(operation: str) -> None:
    logs.log.warning(
        "Response cache unavailable", exc_info=True, extra={"fields": {"operation": operation}}
    )


def _attempts(watcher: StepWatcher | None) -> int:
    return 0 if watcher is None else watcher.attempts


def _queued(gen: Generation, ahead: int, limit: int) -> None:
    place = f"{ahead} ahead of you" if ahead else "you are next"
    pace = "1 answer at a time" if limit == 1 else f"{limit} answers at a time"
    gen.set_status(f"queued: {place}; the model is writing {pace}")
