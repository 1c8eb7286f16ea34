"""Shared fixtures: a clean environment, the asyncio backend, settings built in code, the app and
the fake upstream served over real sockets."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import pytest

from server.app import create_app
from server.settings import Settings
from tests.fake_upstream import FakeUpstream, serve
from tests.servers import inherited, serve_app

if TYPE_CHECKING:
    from tests.databases import Database

SettingsFactory = Callable[..., Settings]
# The browser tests' fixtures (module-scoped Chromium, a context with the page probe), a
# PostgreSQL server for the session with a fresh database per test, both backends as `backend`,
# `database` and `store` (and which tests run on both), the generation broker of the test's
# backend as `brokers`, a Redis server for the session, emptied for each test, and the process
# harness (`cluster`, `start_cluster`: workers, nginx and the fake upstream as processes), and how
# `make test` shares the modules between its two processes.
pytest_plugins = [
    "tests.chromium",
    "tests.pg",
    "tests.databases",
    "tests.brokers",
    "tests.redis_server",
    "tests.cluster",
    "tests.parallel",
    "tests.offline_journey",
]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never inherit an API key or CROSSROADS_* overrides from the shell."""
    for name in list(os.environ):
        if not inherited(name):
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
def make_settings(backend: str, request: pytest.FixtureRequest) -> SettingsFactory:
    """Settings from the shipped file with short deadlines, a temporary data dir and no env, on
    the test's backend (tests/databases.py: SQLite unless the test runs on both)."""
    # Asked for here, not as an argument: a test that asks for `database` itself runs on both
    # backends, and `backend` alone says whether this one does.
    database: Database = request.getfixturevalue("database")
    return database.settings


@pytest.fixture
def base_url(settings: Settings) -> Iterator[str]:
    """The app built from the test module's own `settings` fixture, under a real uvicorn."""
    with serve_app(create_app(settings)) as url:
        yield url


class Upstream(NamedTuple):
    fake: FakeUpstream
    url: str


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    """The fake OpenAI upstream on a real socket. Script it per test (`fake.default`,
    `fake.script(...)`, `fake.responder`), or override this fixture in a module to set a
    default for all its tests: `def upstream(upstream: Upstream) -> Upstream`."""
    fake = FakeUpstream()
    with serve(fake) as url:
        yield Upstream(fake, url)
