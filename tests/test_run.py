"""run.py: a bad setting stops the start with one line and exit code 2; good ones reach uvicorn."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import uvicorn
from starlette.applications import Starlette

import run
from server import logs, schema
from server.settings import ServerSettings, load
from tests.pg import free_port
from tests.servers import clean_env

ROOT = Path(__file__).resolve().parent.parent


def run_py(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=ROOT,
        env=clean_env(**(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_bad_port_from_command_line_exits_2_with_one_line() -> None:
    result = run_py("--port", "70000")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "server.port" in lines[0]
    assert "70000" in lines[0]


def test_more_than_one_embedded_worker_exits_2_saying_why() -> None:
    result = run_py(env={"CROSSROADS_SERVER__WORKERS": "2"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "server.workers" in lines[0]
    assert "one process" in lines[0]
    assert "scale.backend = 'distributed'" in lines[0]


def test_unreachable_postgresql_exits_2_with_one_line_saying_which_and_where() -> None:
    port = free_port()  # nothing listens there
    result = run_py(
        env={
            "CROSSROADS_SCALE__BACKEND": "distributed",
            "CROSSROADS_SCALE__DATABASE_URL": f"postgresql://app:hunter2@127.0.0.1:{port}/journeys",
            "CROSSROADS_SCALE__REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "CROSSROADS_SECRET_KEY": "shared-by-every-machine",
        }
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert f"PostgreSQL at 127.0.0.1:{port}/journeys is unreachable" in lines[0]
    assert "hunter2" not in lines[0]


def test_the_distributed_backend_migrates_postgresql_before_uvicorn_starts(
    monkeypatch: pytest.MonkeyPatch, postgres_url: str, redis_url: str
) -> None:
    started: list[int] = []

    def uvicorn_run(app: object, **options: Any) -> None:
        with psycopg.connect(postgres_url) as conn:  # the schema is there before any request
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
        started.append(row[0] if row else 0)

    monkeypatch.setattr(uvicorn, "run", uvicorn_run)
    monkeypatch.setattr(logs, "configure", lambda level: None)
    monkeypatch.setenv("CROSSROADS_SCALE__BACKEND", "distributed")
    monkeypatch.setenv("CROSSROADS_SCALE__DATABASE_URL", postgres_url)
    monkeypatch.setenv("CROSSROADS_SCALE__REDIS_URL", redis_url)
    monkeypatch.setenv("CROSSROADS_SECRET_KEY", "shared-by-every-machine")
    assert run.main([]) == 0
    assert started == [schema.LATEST]


def test_unreachable_redis_exits_2_with_one_line_saying_where(postgres_url: str) -> None:
    port = free_port()  # nothing listens there
    result = run_py(
        env={
            "CROSSROADS_SCALE__BACKEND": "distributed",
            "CROSSROADS_SCALE__DATABASE_URL": postgres_url,
            "CROSSROADS_SCALE__REDIS_URL": f"redis://:hunter2@127.0.0.1:{port}/3",
            "CROSSROADS_SECRET_KEY": "shared-by-every-machine",
        }
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"crossroads: Redis at redis://127.0.0.1:{port}/3 is unreachable")
    assert "hunter2" not in lines[0]


def test_command_line_port_beats_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CROSSROADS_SERVER__PORT", "8123")
    assert run.main(["--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "server.port = 70000" in err


def test_missing_settings_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    absent = tmp_path / "absent.toml"
    assert run.main(["--settings", str(absent)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(absent) in err


def test_settings_reach_uvicorn(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[object, dict[str, Any]]] = []
    levels: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    monkeypatch.setattr(logs, "configure", levels.append)
    monkeypatch.setenv("CROSSROADS_SERVER__HOST", "0.0.0.0")
    monkeypatch.setenv("CROSSROADS_SERVER__PORT", "70000")  # the command line wins
    monkeypatch.setenv("CROSSROADS_STORAGE__DATA_DIR", str(tmp_path))
    assert run.main(["--host", "127.0.0.2", "--port", "8124"]) == 0
    [(app, options)] = calls
    assert isinstance(app, Starlette)
    assert options["host"] == "127.0.0.2"
    assert options["port"] == 8124
    assert options["workers"] == 1
    assert options["limit_concurrency"] == load(environ={}).server.limit_concurrency
    assert options["log_config"] is None
    assert levels == ["info"]


@pytest.mark.parametrize(
    ("keep_alive_s", "graceful_shutdown_s", "keep_alive", "graceful"),
    [
        (5, 10, 5, 10),
        # Regression: int() made 0.5 s keep-alive 0, and 0 or 0.5 s grace an unbounded wait.
        (0.5, 0.5, 1, 1),
        (2.2, 0, 3, 0),
    ],
)
def test_uvicorn_options_round_seconds_up(
    keep_alive_s: float, graceful_shutdown_s: float, keep_alive: int, graceful: int
) -> None:
    server = ServerSettings(keep_alive_s=keep_alive_s, graceful_shutdown_s=graceful_shutdown_s)
    options = run.uvicorn_options(server)
    assert options["timeout_keep_alive"] == keep_alive
    assert options["timeout_graceful_shutdown"] == graceful
    assert isinstance(options["timeout_graceful_shutdown"], int)
