"""Settings: the shipped file loads, overrides layer, bad values stop the start, the secret key."""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping
from pathlib import Path

import pytest

from server import settings
from server.settings import Category, Settings, SettingsError, secret_key

ONE_CATEGORY = """
[categories.only]
title = "Only"
dimensions = ["A", "B"]
"""
MINIMAL_TOML = "[server]\nport = 8001\n" + ONE_CATEGORY


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- the shipped file ---------------------------------------------------------------------------


def test_shipped_file_loads_and_validates() -> None:
    loaded = settings.load(environ={})
    assert isinstance(loaded, Settings)
    assert loaded.server.workers == 1
    assert loaded.limits.memory_hard_pct > loaded.limits.memory_soft_pct
    assert loaded.api_key is None
    assert loaded.uses_live_model is False


# --- environment and precedence -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "section", "key", "expected"),
    [
        (
            "CROSSROADS_LIMITS__MAX_CONCURRENT_AI_REQUESTS",
            "8",
            "limits",
            "max_concurrent_ai_requests",
            8,
        ),
        (
            "CROSSROADS_LLM__BASE_URL",
            "http://127.0.0.1:9/v1",
            "llm",
            "base_url",
            "http://127.0.0.1:9/v1",
        ),
        ("CROSSROADS_STORAGE__DATA_DIR", "/tmp/x", "storage", "data_dir", Path("/tmp/x")),
        ("CROSSROADS_LIMITS__QUEUE_TIMEOUT_S", "0.25", "limits", "queue_timeout_s", 0.25),
        ("CROSSROADS_SERVER__LOG_LEVEL", "debug", "server", "log_level", "debug"),
    ],
)
def test_environment_overrides_a_key_with_its_type(
    name: str, text: str, section: str, key: str, expected: object
) -> None:
    value = getattr(getattr(settings.load(environ={name: text}), section), key)
    assert value == expected
    assert type(value) is type(expected)


def test_environment_adds_a_category_from_json() -> None:
    table = {"title": "T", "blurb": "b", "dimensions": ["A", "B"]}
    loaded = settings.load(environ={"CROSSROADS_CATEGORIES__TEST": json.dumps(table)})
    assert loaded.categories["test"] == Category(title="T", blurb="b", dimensions=("A", "B"))
    assert "finance" in loaded.categories  # added, not replacing the file's


def test_load_reads_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSROADS_SERVER__PORT", "8123")
    assert settings.load().server.port == 8123


def test_api_key_makes_the_model_live() -> None:
    loaded = settings.load(environ={"OPENAI_API_KEY": "sk-test"})
    assert loaded.api_key == "sk-test"
    assert loaded.uses_live_model is True


def test_no_url_and_no_key_is_offline() -> None:
    loaded = settings.load(environ={})
    assert loaded.llm.base_url == ""
    assert loaded.uses_live_model is False


def test_base_url_without_key_is_live() -> None:
    # Ollama, vLLM and llama.cpp need no key.
    loaded = settings.load(environ={"CROSSROADS_LLM__BASE_URL": "http://127.0.0.1:11434/v1"})
    assert loaded.api_key is None
    assert loaded.uses_live_model is True


def test_secrets_stay_out_of_dumps_and_repr() -> None:
    api, cookie = "sk-never-shown-4711", "cookie-secret-0815"
    loaded = settings.load(environ={"OPENAI_API_KEY": api, "CROSSROADS_SECRET_KEY": cookie})
    assert (loaded.api_key, loaded.secret_key) == (api, cookie)
    dump = loaded.model_dump()
    assert "api_key" not in dump
    assert "secret_key" not in dump
    for text in (str(dump), loaded.model_dump_json(), repr(loaded), str(loaded)):
        assert api not in text
        assert cookie not in text


def test_api_key_is_never_read_from_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, 'api_key = "sk-from-file"\n' + MINIMAL_TOML)
    assert settings.load(path, environ={}).api_key is None


def test_overrides_beat_environment_beat_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, MINIMAL_TOML)
    env = {"CROSSROADS_SERVER__PORT": "8002"}
    cli = {"server": {"port": 8003}}
    assert settings.load(path, environ={}).server.port == 8001
    assert settings.load(path, environ=env).server.port == 8002
    assert settings.load(path, environ=env, overrides=cli).server.port == 8003
    assert settings.load(path, environ={}, overrides=cli).server.port == 8003


# --- invalid values -----------------------------------------------------------------------------


def assert_one_line(message: str, *fragments: str) -> None:
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


@pytest.mark.parametrize(
    ("environ", "fragments"),
    [
        pytest.param(
            {"CROSSROADS_LIMITS__QUEUE_TIMEOUT_S": "-1"},
            ("limits.queue_timeout_s", "-1", "greater than or equal to 0"),
            id="negative-queue-timeout",
        ),
        pytest.param(
            {"CROSSROADS_LIMITS__FIRST_TOKEN_TIMEOUT_S": "-5"},
            ("limits.first_token_timeout_s", "-5", "greater than 0"),
            id="negative-first-token-timeout",
        ),
        pytest.param(
            {"CROSSROADS_STREAM__ABANDON_GRACE_S": "-0.5"},
            ("stream.abandon_grace_s", "-0.5", "greater than 0"),
            id="negative-grace",
        ),
        pytest.param(
            {"CROSSROADS_SERVER__PORT": "0"},
            ("server.port", "0", "greater than or equal to 1"),
            id="port-0",
        ),
        pytest.param(
            {"CROSSROADS_SERVER__PORT": "70000"},
            ("server.port", "70000", "less than or equal to 65535"),
            id="port-70000",
        ),
        pytest.param(
            {"CROSSROADS_SERVER__WORKERS": "2"},
            ("server.workers", "2", "must be 1", "one process", "semaphore", "watchdog"),
            id="workers-2",
        ),
        pytest.param(
            {"CROSSROADS_LIMITS__MEMORY_HARD_PCT": "70"},
            ("limits.memory_hard_pct", "70", "above limits.memory_soft_pct (75)"),
            id="hard-below-soft",
        ),
        pytest.param(
            {
                "CROSSROADS_LIMITS__MEMORY_SOFT_PCT": "90",
                "CROSSROADS_LIMITS__MEMORY_HARD_PCT": "90",
            },
            ("limits.memory_hard_pct", "90", "above limits.memory_soft_pct (90)"),
            id="hard-equals-soft",
        ),
        pytest.param(
            {"CROSSROADS_LIMITS__MAX_CONCURENT_AI_REQUESTS": "8"},
            ("unknown setting limits.max_concurent_ai_requests", "spelling"),
            id="unknown-key",
        ),
        pytest.param(
            {"CROSSROADS_LIMTS__QUEUE_TIMEOUT_S": "1"},
            ("unknown setting limts",),
            id="unknown-section",
        ),
        pytest.param(
            {"CROSSROADS_LIMITS__MAX_CONCURRENT_AI_REQUESTS": "abc"},
            ("limits.max_concurrent_ai_requests", "'abc'", "valid integer"),
            id="wrong-type",
        ),
        pytest.param(
            {"CROSSROADS_LLM__MAX_TOKENS_PARAM": "max_output_tokens"},
            (
                "llm.max_tokens_param",
                "max_output_tokens",
                "'max_tokens' or 'max_completion_tokens'",
            ),
            id="max-tokens-param",
        ),
        pytest.param(
            {"CROSSROADS_CATEGORIES__TEST": '{"title": "T", "dimensions": ["A"]}'},
            ("categories.test.dimensions", "['A']", "at least 2"),
            id="one-dimension",
        ),
        pytest.param(
            {"CROSSROADS_SCALE__BACKEND": "redis"},
            ("scale.backend", "'redis'", "'embedded' or 'distributed'"),
            id="unknown-backend",
        ),
        pytest.param(
            {"CROSSROADS_SCALE__BACKEND": "distributed", "CROSSROADS_SECRET_KEY": "k" * 32},
            ("scale.database_url", "empty", "PostgreSQL"),
            id="distributed-without-database",
        ),
        pytest.param(
            {
                "CROSSROADS_SCALE__BACKEND": "distributed",
                "CROSSROADS_SCALE__DATABASE_URL": "postgresql://db.internal/crossroads",
            },
            ("scale.backend", "CROSSROADS_SECRET_KEY", "every worker and machine"),
            id="distributed-without-secret-key",
        ),
        pytest.param(
            {
                "CROSSROADS_SCALE__BACKEND": "distributed",
                "CROSSROADS_SCALE__DATABASE_URL": "postgresql://db.internal/crossroads",
                "CROSSROADS_SECRET_KEY": "k" * 32,
            },
            ("scale.redis_url", "empty", "Redis"),
            id="distributed-without-redis",
        ),
        pytest.param(
            {"CROSSROADS_SCALE__LEASE_S": "0"},
            ("scale.lease_s", "0", "greater than 0"),
            id="lease-0",
        ),
        pytest.param(
            # Regression: inf passed validation and crashed int() in run.py with a traceback.
            {"CROSSROADS_SERVER__KEEP_ALIVE_S": "Infinity"},
            ("server.keep_alive_s", "inf", "finite"),
            id="infinite-keep-alive",
        ),
    ],
)
def test_invalid_value_names_key_value_and_what_is_allowed(
    environ: Mapping[str, str], fragments: tuple[str, ...]
) -> None:
    with pytest.raises(SettingsError) as caught:
        settings.load(environ=environ)
    assert_one_line(str(caught.value), *fragments)


def test_bad_category_id_names_it_without_dumping_every_category() -> None:
    # Regression: a table-level error printed the whole categories table as "the value".
    bad = {"title": "T", "dimensions": ["A", "B"]}
    with pytest.raises(SettingsError) as caught:
        settings.load(environ={}, overrides={"categories": {"Bad Id": bad}})
    message = str(caught.value)
    assert_one_line(message, "categories", "'Bad Id'", "lowercase")
    assert "Money" not in message


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        pytest.param(
            b"[server]\nport = = 1\n", ("{path}", "is not valid TOML", "line 2"), id="not-toml"
        ),
        pytest.param(b'title = "\xff"\n', ("{path}", "is not UTF-8"), id="not-utf8"),
        pytest.param(
            b"[server]\nprt = 8000\n" + ONE_CATEGORY.encode(),
            ("unknown setting server.prt",),
            id="unknown-key-in-file",
        ),
        pytest.param(
            b"[server]\nport = 8000\n", ("setting categories is missing",), id="no-categories"
        ),
    ],
)
def test_invalid_file(tmp_path: Path, content: bytes, fragments: tuple[str, ...]) -> None:
    path = tmp_path / "settings.toml"
    path.write_bytes(content)
    with pytest.raises(SettingsError) as caught:
        settings.load(path, environ={})
    assert_one_line(str(caught.value), *(f.format(path=path) for f in fragments))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(SettingsError) as caught:
        settings.load(path, environ={})
    assert_one_line(str(caught.value), str(path), "does not exist")


def test_unreadable_file(tmp_path: Path) -> None:
    # Regression: a directory (or an unreadable file) escaped as an OSError with a traceback.
    with pytest.raises(SettingsError) as caught:
        settings.load(tmp_path, environ={})
    assert_one_line(str(caught.value), str(tmp_path), "cannot be read")


# --- secret_key ---------------------------------------------------------------------------------


def load_with_data_dir(data_dir: Path, environ: Mapping[str, str] | None = None) -> Settings:
    return settings.load(environ=environ or {}, overrides={"storage": {"data_dir": str(data_dir)}})


def test_secret_key_from_environment(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    loaded = load_with_data_dir(data_dir, {"CROSSROADS_SECRET_KEY": "from-the-environment"})
    assert secret_key(loaded) == "from-the-environment"
    assert not (data_dir / "secret_key").exists()


def test_secret_key_generated_once_with_mode_0600(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    loaded = load_with_data_dir(data_dir)
    first = secret_key(loaded)
    path = data_dir / "secret_key"
    assert len(first) >= 32
    assert path.read_text(encoding="ascii") == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert secret_key(load_with_data_dir(data_dir)) == first
    assert [p.name for p in data_dir.iterdir()] == ["secret_key"]  # no temporary left behind


def test_secret_key_is_distinct_per_data_dir(tmp_path: Path) -> None:
    first = secret_key(load_with_data_dir(tmp_path / "a"))
    assert secret_key(load_with_data_dir(tmp_path / "b")) != first


def test_empty_secret_key_file_is_replaced(tmp_path: Path) -> None:
    # Regression: an empty file (a crash or a full disk on first run) made "" the secret.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "secret_key").write_text("\n", encoding="ascii")
    value = secret_key(load_with_data_dir(data_dir))
    assert len(value) >= 32
    assert (data_dir / "secret_key").read_text(encoding="ascii") == value
    assert stat.S_IMODE((data_dir / "secret_key").stat().st_mode) == 0o600


def test_the_distributed_backend_takes_its_database_and_the_shared_secret() -> None:
    loaded = settings.load(
        environ={
            "CROSSROADS_SCALE__BACKEND": "distributed",
            "CROSSROADS_SCALE__DATABASE_URL": "postgresql://db.internal/crossroads",
            "CROSSROADS_SCALE__REDIS_URL": "redis://cache.internal:6379/0",
            "CROSSROADS_SECRET_KEY": "shared-by-every-machine",
        }
    )
    assert loaded.scale.backend == "distributed"
    assert loaded.scale.database_url == "postgresql://db.internal/crossroads"
    assert loaded.scale.redis_url == "redis://cache.internal:6379/0"
    assert settings.load(environ={}).scale.backend == "embedded"  # the default stays embedded


def test_several_workers_need_the_distributed_backend() -> None:
    distributed = {
        "CROSSROADS_SCALE__BACKEND": "distributed",
        "CROSSROADS_SCALE__DATABASE_URL": "postgresql://db.internal/crossroads",
        "CROSSROADS_SCALE__REDIS_URL": "redis://cache.internal:6379/0",
        "CROSSROADS_SECRET_KEY": "shared-by-every-machine",
    }
    assert (
        settings.load(environ={**distributed, "CROSSROADS_SERVER__WORKERS": "4"}).server.workers
        == 4
    )
    with pytest.raises(SettingsError, match=r"scale\.backend = 'embedded'"):
        settings.load(environ={"CROSSROADS_SERVER__WORKERS": "4"})


def test_each_support_resource_reads_as_its_name_then_its_contact() -> None:
    """The page shows "name: contact"; a colon in the name read as "Your doctor, nurse or
    pharmacist: for any question about your own health: your local practice"."""
    categories = settings.load(environ={}).categories
    resources = [r for category in categories.values() for r in category.resources]
    assert resources
    for resource in resources:
        assert ":" not in resource.name, resource.name
