"""The settings as typed sections: each key with its type, bounds, default and help text."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator


class _Section(BaseModel):
    # inf would disable a deadline silently (and crashes int() in run.py); nan fails every check.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ServerSettings(_Section):
    host: str = Field(
        "127.0.0.1",
        description="Interface to listen on. 127.0.0.1 keeps the app private to this machine.",
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    workers: int = Field(
        1,
        ge=1,
        description="Worker processes on this machine, started and restarted by uvicorn's "
        "supervisor. Must be 1 with the embedded backend; with the distributed one, about one "
        "per core (each worker keeps its own memory watchdog).",
    )
    limit_concurrency: int = Field(
        4000,
        ge=10,
        description="Most connections uvicorn accepts at once before answering 503 "
        "(open SSE streams count).",
    )
    keep_alive_s: float = Field(
        5, gt=0, description="Seconds an idle keep-alive connection is kept open."
    )
    graceful_shutdown_s: float = Field(
        10,
        ge=0,
        description="Seconds open streams get to finish when the server stops (SIGTERM).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        description="Log level: debug, info, warning or error. Other libraries' records are "
        "logged from warning up, or from this level if it is higher.",
    )


class LlmSettings(_Section):
    base_url: str = Field(
        "",
        description='OpenAI-compatible endpoint, e.g. "https://api.openai.com/v1", '
        '"http://127.0.0.1:11434/v1" (Ollama) or a vLLM / llama.cpp server. '
        "Empty and no OPENAI_API_KEY in the environment: the built-in offline model.",
    )
    model: str = Field("gpt-4o-mini", min_length=1, description="Model name sent to the endpoint.")
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = Field(
        "max_tokens",
        description='Name of the token-limit parameter: "max_tokens" or "max_completion_tokens" '
        "(newer OpenAI models refuse the old name).",
    )
    max_tokens_scenario: int = Field(
        450, ge=16, le=32000, description="Output token cap for a scenario."
    )
    max_tokens_question: int = Field(
        200, ge=16, le=32000, description="Output token cap for a follow-up question."
    )
    max_tokens_report: int = Field(
        1100, ge=16, le=32000, description="Output token cap for the report."
    )
    temperature: float = Field(0.8, ge=0, le=2, description="Sampling temperature.")
    connect_timeout_s: float = Field(
        5.0, gt=0, description="Seconds to wait for the TCP connection to the endpoint."
    )


class LimitsSettings(_Section):
    max_concurrent_ai_requests: int = Field(
        16,
        ge=1,
        description="Model calls that may run at once in this process; the rest wait in a queue.",
    )
    adaptive_concurrency: bool = Field(
        True,
        description="Learn how many model calls the upstream copes with at once: fewer when it "
        "cuts streams, answers 429 or its first token slows down (down to 1), more again while "
        "it copes (up to max_concurrent_ai_requests). false keeps the limit fixed.",
    )
    queue_timeout_s: float = Field(
        5.0,
        ge=0,
        description="Seconds a step waits in the queue for a slot before it falls back.",
    )
    first_token_timeout_s: float = Field(
        20.0,
        gt=0,
        description="Seconds from the request to the first token before the call is retried "
        "or falls back.",
    )
    chunk_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Most seconds between two chunks of a stream before it falls back.",
    )
    worker_time_limit_s: float = Field(
        60.0,
        gt=0,
        description="Whole-step deadline in seconds, counted from when the step gets its slot; "
        "also bounds every non-streaming request.",
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Attempts per step (first try included) for errors before the first token.",
    )
    worker_memory_limit_mb: int = Field(
        1024,
        ge=64,
        description="Memory the process may use, in MB; the watchdog's levels are percentages "
        "of it.",
    )
    memory_soft_pct: float = Field(
        75,
        gt=0,
        lt=100,
        description="Soft level: no new model calls are admitted, buffers are trimmed.",
    )
    memory_hard_pct: float = Field(
        90,
        gt=0,
        le=100,
        description="Hard level: the newest generations are cancelled, new sessions get a 503.",
    )
    watchdog_interval_s: float = Field(1.0, gt=0, description="Seconds between two memory samples.")
    high_risk_request_s: float = Field(
        30.0,
        gt=0,
        description="A page or form request that runs longer than this (seconds) is logged as "
        "high-risk (a live stream lasts as long as its step: only its memory growth counts).",
    )
    high_risk_rss_mb: float = Field(
        50,
        gt=0,
        description="A request that grows the process RSS by more than this (MB) is logged as "
        "high-risk.",
    )
    max_body_bytes: int = Field(
        16384, ge=1024, description="Largest request body accepted, in bytes."
    )
    sessions_per_minute_per_client: int = Field(
        10, ge=0, description="New sessions per minute per client address (0 = no limit)."
    )
    answers_per_minute_per_client: int = Field(
        30, ge=0, description="Answers per minute per client address (0 = no limit)."
    )

    # A field validator (not a model one) so the error names limits.memory_hard_pct and its
    # value; memory_soft_pct is declared first, so it is already in info.data when valid.
    @field_validator("memory_hard_pct")
    @classmethod
    def _hard_above_soft(cls, value: float, info: ValidationInfo) -> float:
        soft = info.data.get("memory_soft_pct")
        if soft is not None and value <= soft:
            raise ValueError(f"must be above limits.memory_soft_pct ({soft:g})")
        return value


class StreamSettings(_Section):
    heartbeat_s: float = Field(
        5.0,
        gt=0,
        le=60,
        description="The longest an SSE stream stays silent, in seconds: a heartbeat "
        "comment goes out after half of it without a byte sent.",
    )
    frame_ms: int = Field(
        50,
        ge=0,
        le=1000,
        description="Shortest interval between two text frames of one stream, in milliseconds.",
    )
    abandon_grace_s: float = Field(
        15.0,
        gt=0,
        description="Seconds a generation keeps running after its last viewer left.",
    )


class StorageSettings(_Section):
    data_dir: Path = Field(
        Path("data"),
        description="Directory for the SQLite database, the cache and the generated secret.",
    )
    cache_size_mb: int = Field(
        256,
        ge=1,
        description="Size cap of the response cache and scenario pool, in MB.",
    )
    session_ttl_days: int = Field(
        30, ge=1, description="Days after which a session and its answers are deleted."
    )


class JourneySettings(_Section):
    questions_per_session: int = Field(
        5, ge=1, le=12, description="Follow-up questions per session."
    )
    answer_max_chars: int = Field(
        2000, ge=20, le=20000, description="Longest answer accepted, in characters."
    )


class OfflineSettings(_Section):
    chars_per_s: float = Field(
        400.0,
        gt=0,
        description="Typing pace of the offline model when it is the configured model "
        "(characters per second).",
    )


class ScaleSettings(_Section):
    backend: Literal["embedded", "distributed"] = Field(
        "embedded",
        description='"embedded": SQLite in data_dir and everything else in this one process. '
        '"distributed": sessions, steps and answers in PostgreSQL at database_url, the rate '
        "limits and the response cache in Redis at redis_url, shared by every worker and "
        "machine; needs CROSSROADS_SECRET_KEY in the environment, the same "
        "everywhere, so that any of them can verify any cookie.",
    )
    database_url: str = Field(
        "",
        description="PostgreSQL for the distributed backend, e.g. "
        '"postgresql://crossroads@db.internal:5432/crossroads". With a password in it, set it '
        "in the environment (CROSSROADS_SCALE__DATABASE_URL) rather than here.",
    )
    redis_url: str = Field(
        "",
        description='Redis for the distributed backend, e.g. "redis://cache.internal:6379/0": '
        "the rate limits, the response cache and the scenario pool, shared by every worker and "
        "machine. With a password in it, set it in the environment (CROSSROADS_SCALE__REDIS_URL).",
    )
    lease_s: float = Field(
        10.0,
        gt=0,
        description="Seconds a worker's lease on a running step or a model-call slot lasts "
        "unless renewed; a dead worker's steps and slots are taken over after it.",
    )


# The categories are data, not settings with defaults: the file holds them and the code says
# what each key of one means (the comment above the first category names every key).
class Resource(_Section):
    name: str = Field(min_length=1, description="What the resource is, as shown.")
    contact: str = Field(min_length=1, description="A phone number or a URL.")


class Category(_Section):
    title: str = Field(min_length=1, description="The card's title on the home page.")
    blurb: str = Field("", description="One line under the title.")
    dimensions: tuple[str, ...] = Field(
        min_length=2, max_length=8, description="What the report scores from 0 to 10."
    )
    resources: tuple[Resource, ...] = Field(
        (), description="Support resources shown on the category's report page."
    )


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    llm: LlmSettings = LlmSettings()
    limits: LimitsSettings = LimitsSettings()
    stream: StreamSettings = StreamSettings()
    storage: StorageSettings = StorageSettings()
    journey: JourneySettings = JourneySettings()
    offline: OfflineSettings = OfflineSettings()
    scale: ScaleSettings = ScaleSettings()
    categories: dict[str, Category] = Field(min_length=1)
    # From the environment only, never from the file.
    api_key: str | None = Field(None, exclude=True, repr=False)
    secret_key: str | None = Field(None, exclude=True, repr=False)

    @field_validator("categories")
    @classmethod
    def _category_ids(cls, value: dict[str, Category]) -> dict[str, Category]:
        for cid in value:
            if not cid.replace("_", "").replace("-", "").isalnum() or cid != cid.lower():
                raise ValueError(f"category id {cid!r} must be lowercase letters, digits, - or _")
        return value

    @property
    def uses_live_model(self) -> bool:
        """A live model is configured by a base URL, or by an API key for OpenAI's own URL."""
        return bool(self.llm.base_url or self.api_key)
