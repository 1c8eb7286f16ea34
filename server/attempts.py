"""What each attempt of a step's model call tells the person, the log, the metrics and admission."""

from __future__ import annotations

import logging

from server import logs
from server.admission import HeldSlot, ModelAdmission
from server.metrics import Metrics
from server.streaming import Generation
from server.watch import Attempt

# What the status line says while the next attempt waits (the wait is the upstream's fault,
# never the person's), by the reason the last one failed.
RETRY_CAUSES = {
    "first_token_timeout": "The model is slow",
    "rate_limited": "The model is busy",
    "upstream_status": "The model answered with an error",
    "connection_error": "The model could not be reached",
    "incomplete_stream": "The model broke off before writing",
}
RETRYING = "asking again"


def waiting(status: str) -> bool:
    """Whether a step's status is a wait the person may cut short by taking the prepared text
    (static/js/app.js tests the same two marks)."""
    return status.startswith("queued:") or RETRYING in status


def retry_status(attempt: Attempt) -> str:
    cause = RETRY_CAUSES.get(attempt.outcome, "The model did not answer")
    return f"{cause}; {RETRYING} ({attempt.number + 1} of {attempt.of})"


class StepWatcher:
    """Follows the attempts of one step's model call, inside its admission slot."""

    def __init__(
        self,
        gen: Generation,
        kind: str,
        *,
        admission: ModelAdmission,
        slot: HeldSlot,
        metrics: Metrics,
    ) -> None:
        self.gen = gen
        self.kind = kind
        self.admission = admission
        self.slot = slot
        self.metrics = metrics
        self.attempts = 0

    def ended(self, attempt: Attempt) -> None:
        self.attempts = attempt.number
        self.metrics.attempts.labels(attempt.outcome).inc()
        self.admission.observe(
            attempt.outcome, started=attempt.started, first_token_s=attempt.first_token_s
        )
        if attempt.retry_in_s is None:
            return
        logs.event(
            logging.WARNING,
            "Model call retried",
            reason=attempt.outcome,
            kind=self.kind,
            attempt=attempt.number + 1,
            of=attempt.of,
            wait_s=round(attempt.retry_in_s, 3),
        )
        self.gen.set_status(retry_status(attempt))

    async def before_retry(self, attempt: Attempt) -> None:
        # The learned limit may have fallen while this call waited: if more calls hold a slot
        # than the upstream copes with, this one steps back to the head of the line.
        if await self.slot.recheck():
            self.gen.set_status(retry_status(attempt))
