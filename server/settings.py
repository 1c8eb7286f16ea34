"""Loading the settings: the only reader of settings.toml and of the environment."""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from server.settings_sections import (
    Category,
    JourneySettings,
    LimitsSettings,
    LlmSettings,
    OfflineSettings,
    Resource,
    ScaleSettings,
    ServerSettings,
    Settings,
    StorageSettings,
    StreamSettings,
)

# The sections are importable from here, the settings' one door, as they always were.
__all__ = [
    "DEFAULT_PATH",
    "ENV_PREFIX",
    "Category",
    "JourneySettings",
    "LimitsSettings",
    "LlmSettings",
    "OfflineSettings",
    "Resource",
    "ScaleSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "StorageSettings",
    "StreamSettings",
    "load",
    "secret_key",
    "validate",
]

ENV_PREFIX = "CROSSROADS_"
DEFAULT_PATH = Path(__file__).resolve().parent.parent / "settings.toml"


class SettingsError(Exception):
    """A setting that stops the start; the message names key, value and what is allowed."""


def load(
    path: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Read the file, apply environment overrides then explicit ones, validate."""
    env = os.environ if environ is None else environ
    file_path = Path(path) if path is not None else DEFAULT_PATH
    try:
        raw: dict[str, Any] = tomllib.loads(file_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"settings file {file_path} does not exist") from None
    except OSError as exc:
        raise SettingsError(f"settings file {file_path} cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SettingsError(f"settings file {file_path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"settings file {file_path} is not valid TOML: {exc}") from None
    for (section, key), value in _env_overrides(env).items():
        _put(raw, section, key, value)
    for section, values in (overrides or {}).items():
        for key, value in values.items():
            _put(raw, section, key, value)
    raw["api_key"] = env.get("OPENAI_API_KEY") or None
    raw["secret_key"] = env.get("CROSSROADS_SECRET_KEY") or None
    return validate(raw)


def validate(raw: Mapping[str, Any]) -> Settings:
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise SettingsError(_describe(exc)) from None
    _check_workers(settings)
    _check_backend(settings)
    return settings


def _check_workers(settings: Settings) -> None:
    """Several workers need the distributed backend: the embedded one keeps the generations,
    the model-call slots and the rate limits in the memory of one process."""
    workers = settings.server.workers
    if workers > 1 and settings.scale.backend == "embedded":
        raise SettingsError(
            f"invalid setting server.workers = {workers}: must be 1 with scale.backend = "
            "'embedded': generations, the AI-request semaphore and the memory watchdog live in "
            "one process, so more workers would split them (scale.backend = 'distributed' "
            "shares them through Redis and PostgreSQL)"
        )


def _check_backend(settings: Settings) -> None:
    """What the distributed backend needs beyond valid values (here, not in a validator, so that
    the line names the setting rather than dumping the whole table)."""
    if settings.scale.backend != "distributed":
        return
    if not settings.scale.database_url:
        raise SettingsError(
            "setting scale.database_url is empty: scale.backend = 'distributed' keeps the "
            "sessions in PostgreSQL and needs its URL"
        )
    if not settings.secret_key:
        raise SettingsError(
            "scale.backend = 'distributed' needs CROSSROADS_SECRET_KEY in the environment, the "
            "same on every worker and machine, so that any of them can verify any cookie"
        )
    if not settings.scale.redis_url:
        raise SettingsError(
            "setting scale.redis_url is empty: scale.backend = 'distributed' keeps the rate "
            "limits and the response cache in Redis and needs its URL"
        )


def _put(raw: dict[str, Any], section: str, key: str | None, value: Any) -> None:
    if key is None:
        raw[section] = value
        return
    target = raw.setdefault(section, {})
    if not isinstance(target, dict):
        raise SettingsError(f"setting {section} is not a table, cannot set {section}.{key}")
    target[key] = value


def _env_overrides(env: Mapping[str, str]) -> dict[tuple[str, str | None], Any]:
    found: dict[tuple[str, str | None], Any] = {}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name == "CROSSROADS_SECRET_KEY":
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        found[(section, key or None)] = _parse_env_value(text)
    return found


def _parse_env_value(text: str) -> Any:
    # JSON first so numbers, booleans, lists and tables keep their type;
    # anything else (a URL, a bare word) is a string.
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _describe(exc: ValidationError) -> str:
    error = exc.errors()[0]
    key = ".".join(str(part) for part in error["loc"]) or "settings"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"unknown setting {key}: remove it or check its spelling"
    if error["type"] == "missing":
        return f"setting {key} is missing"
    if isinstance(error.get("input"), Mapping):
        # A whole table failed (e.g. a bad category id): the message names the culprit,
        # and dumping the table would bury it.
        return f"invalid setting {key}: {message}"
    return f"invalid setting {key} = {error.get('input')!r}: {message}"


def secret_key(settings: Settings) -> str:
    """CROSSROADS_SECRET_KEY, or a secret generated on first run and kept in the data dir (0600)."""
    if settings.secret_key:
        return settings.secret_key
    path = settings.storage.data_dir / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        stored = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        stored = ""
    if stored:
        return stored
    # Written whole to a private (0600) temporary file, then renamed into place: a crash or a
    # full disk never leaves an empty file whose "" would sign every cookie from then on.
    value = secrets.token_urlsafe(32)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(value)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return value
