"""Shared fixtures: a clean environment, the asyncio backend, settings built in code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from server.settings import Settings, load

SettingsFactory = Callable[..., Settings]
# The browser tests' fixtures (module-scoped Chromium, a context with the page probe), a
# PostgreSQL server for the session with a fresh database per test, both store backends as a
# parametrized `database` and `store`, and a Redis server for the session, emptied for each test.
pytest_plugins = ["tests.chromium", "tests.pg", "tests.databases", "tests.redis_server"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit an API key or CROSSROADS_* overrides from the shell."""
    import os

    for name in list(os.environ):
        if name == "OPENAI_API_KEY" or name.startswith("CROSSROADS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def fast_limits(**overrides: Any) -> dict[str, Any]:
    limits: dict[str, Any] = {
        "max_concurrent_ai_requests": 4,
        "queue_timeout_s": 1.0,
        "first_token_timeout_s": 1.0,
        "chunk_timeout_s": 1.0,
        "worker_time_limit_s": 5.0,
        "sessions_per_minute_per_client": 0,
        "answers_per_minute_per_client": 0,
    }
    limits.update(overrides)
    return limits


@pytest.fixture
def make_settings(tmp_path: Path) -> SettingsFactory:
    """Settings from the shipped file with short deadlines, a temporary data dir and no env."""

    def make(**sections: dict[str, Any]) -> Settings:
        overrides: dict[str, dict[str, Any]] = {
            "storage": {"data_dir": str(tmp_path / "data")},
            "limits": fast_limits(),
            "stream": {"heartbeat_s": 1.0, "frame_ms": 20, "abandon_grace_s": 1.0},
            "offline": {"chars_per_s": 4000.0},
        }
        for section, values in sections.items():
            overrides.setdefault(section, {}).update(values)
        return load(environ={}, overrides=overrides)

    return make
