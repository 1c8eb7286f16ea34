"""Why a step did not come from the live model: the one vocabulary of failure reasons."""

from __future__ import annotations

from typing import Literal, get_args

FailureReason = Literal[
    # The model's deadlines (llm.py).
    "first_token_timeout",
    "chunk_timeout",
    "step_timeout",
    # What the upstream did (llm.py).
    "rate_limited",
    "upstream_status",
    "connection_error",
    "malformed_chunk",
    "incomplete_stream",
    # A fault the model layer did not classify (steps.py).
    "model_error",
    # The finished text failed its checks (checks.py).
    "token_cap",
    "echoed_prompt",
    "echoed_seed",
    "echoed_labels",
    # Admission and the memory watchdog (admission*.py, journeys.py).
    "queue_timeout",
    # The distributed backend's shared queue (Redis) did not answer, or no longer held the
    # call's slot (admission_redis.py): never admitted on a per-process count instead.
    "admission_unavailable",
    "memory_soft",
    "memory_hard",
    # The person took the prepared text instead of waiting (journeys.py).
    "chose_prepared",
]
REASONS: tuple[FailureReason, ...] = get_args(FailureReason)

_SLOW = "The model was slow to answer"
_DOWN = "The model could not be reached"
_MEMORY = "The server is short of memory"
# What the person is told, in the step's note, before "so this is ...".
CAUSES: dict[FailureReason, str] = {
    "first_token_timeout": _SLOW,
    "chunk_timeout": _SLOW,
    "step_timeout": _SLOW,
    "rate_limited": "The model is busy right now",
    "upstream_status": _DOWN,
    "connection_error": _DOWN,
    "malformed_chunk": "The model sent a broken answer",
    "incomplete_stream": "The model stopped mid-answer",
    "model_error": "The model was unavailable",
    "token_cap": "The model ran out of room before it finished",
    "echoed_prompt": "The model repeated its instructions instead of answering",
    "echoed_seed": "The model wrote out part of its instructions",
    "echoed_labels": "The model copied the labels around your answers",
    "queue_timeout": "Many people are writing right now",
    "admission_unavailable": "The server could not reserve a turn with the model",
    "memory_soft": _MEMORY,
    "memory_hard": _MEMORY,
    "chose_prepared": "You chose not to wait for the model",
}


def memory_reason(level: str) -> FailureReason:
    """The reason a step falls back at a memory level other than ok."""
    return "memory_hard" if level == "hard" else "memory_soft"
