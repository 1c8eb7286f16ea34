"""The dependency rules of shared/STYLE.md, checked on the imports of every module of the app."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The rules as data. A name is a module or a package: "starlette" covers starlette.responses,
# "server.generators" covers every module in that package. A new module gets every rule that
# names no module in particular: it may import none of ONLY_IN's names and read no environment.

# Who may import it: imported name -> the modules allowed to.
ONLY_IN: dict[str, frozenset[str]] = {
    "openai": frozenset({"server.llm"}),
    # The model's HTTP client lives in llm.py; app.py builds the one shared client at start-up.
    "httpx2": frozenset({"server.llm", "server.app"}),
    "httpx": frozenset({"server.llm", "server.app"}),
    "aiohttp": frozenset({"server.llm", "server.app"}),
    "diskcache": frozenset({"server.cache_disk"}),
    # Each database driver in its own store implementation; the rest of the app sees the
    # Store interface only.
    "sqlite3": frozenset(
        {
            "server.store_sqlite",
            "server.store_sqlite_steps",
            "server.store_sqlite_edits",
            "server.db_sqlite",
        }
    ),
    "psycopg": frozenset({"server.store_postgres", "server.db_postgres"}),
    "psycopg_pool": frozenset({"server.db_postgres"}),
    # Settings: the only reader of settings.toml (and of any other configuration format).
    "tomllib": frozenset({"server.settings"}),
    "dotenv": frozenset({"server.settings"}),
    "configparser": frozenset({"server.settings"}),
    # app.py wires everything; only run.py (and the tests, which are not walked) start it.
    "server.app": frozenset({"run"}),
}

# Who may import it, by the importing module's name: imported name -> the ending that name must
# have. The Redis client belongs to the distributed backend's own modules (server/*_redis.py);
# the rest of the app sees their interfaces only.
ONLY_IN_NAMED: dict[str, str] = {"redis": "_redis"}

# What it must not import: importing module or package -> forbidden names. A package may
# always import its own modules (the generators import each other).
NEVER: dict[str, frozenset[str]] = {
    # The settings' sections are declarations (types, bounds, defaults, help): settings.py loads
    # them, never the reverse, and they reach nothing else of the app.
    "server.settings_sections": frozenset({"server"}),
    # A store is made of its parts (steps and answers, journey edits), never the reverse; and no
    # part reaches the other backend or the Store interface, which imports the stores.
    "server.store_sqlite_steps": frozenset({"server.store", "server.store_sqlite"}),
    "server.store_sqlite_edits": frozenset({"server.store", "server.store_sqlite"}),
    "server.store_postgres_steps": frozenset({"server.store", "server.store_postgres"}),
    "server.store_postgres_edits": frozenset({"server.store", "server.store_postgres"}),
    "server.streaming": frozenset({"starlette", "sse_starlette"}),
    "server.viewing": frozenset({"starlette", "sse_starlette"}),
    # The journey ends a step with what the store holds; the web layer renders the element.
    "server.journeys": frozenset(
        {"starlette", "sse_starlette", "jinja2", "server.views", "server.routes", "server.pages"}
    ),
    # Pure composition: no web, network, database, process or event-loop layer, no other
    # server module.
    "server.generators": frozenset(
        {
            "server",
            "starlette",
            "sse_starlette",
            "uvicorn",
            "openai",
            "httpx",
            "httpx2",
            "aiohttp",
            "diskcache",
            "sqlite3",
            "psycopg",
            "psycopg_pool",
            "redis",
            "anyio",
            "asyncio",
            "psutil",
            "socket",
            "subprocess",
        }
    ),
}

# Who may read the environment (os.environ, os.getenv, ...): the settings alone.
# server.cluster (`make cluster`) reads it only to hand it on to the workers it starts, with the
# cluster's own settings added as CROSSROADS_* variables that the workers' settings then read.
ENVIRONMENT_READERS = frozenset({"server.settings", "server.cluster"})
ENVIRONMENT_NAMES = frozenset({"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"})

# Who may read files by hand: module -> the functions that may (None: anywhere in it). The
# store, the cache and the templates open theirs through their libraries.
FILE_READERS: dict[str, frozenset[str] | None] = {
    "server.settings": None,  # settings.toml and the generated secret key
    "server.generators.bank": frozenset({"load_bank"}),  # the offline bank, once at start-up
    # Not a file: the connection pool's open(), which the checker cannot tell from one by name.
    "server.db_postgres": frozenset({"connect"}),
    # A child process's log: opened for it to write to, and its end read back for an error.
    "server.children": frozenset({"launch", "tail"}),
    # The process's own memory (/proc/<pid>/statm), opened once and read by the watchdog and
    # the request guard: psutil did the same per reading, at eight times the cost.
    "server.watchdog": frozenset({"_statm"}),
}
FILE_CALLS = frozenset({"open", "open_file", "read_text", "read_bytes", "iterdir"})


@dataclass(frozen=True)
class Source:
    module: str
    text: str


def within(name: str, key: str) -> bool:
    return name == key or name.startswith(key + ".")


def imported_names(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every module an import names, with `from a import b` also as a.b (b may be a module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level or node.module is None:
                yield node.lineno, "." * node.level + (node.module or "")
                continue
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _functions(tree: ast.AST) -> dict[ast.AST, str]:
    """Each node inside a function, mapped to the name of the outermost function holding it."""
    owner: dict[ast.AST, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node not in owner:
            for inner in ast.walk(node):
                owner.setdefault(inner, node.name)
    return owner


def _called_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


def violations(source: Source) -> list[str]:
    """What in one module breaks the rules above, each as `module:line what`."""
    if not within(source.module, "server"):
        return _tool_violations(source)
    tree = ast.parse(source.text)
    module = source.module
    found: list[str] = []
    for line, name in imported_names(tree):
        where = f"{module}:{line}"
        if name.startswith("."):
            found.append(f"{where} relative import {name}: it hides what a module depends on")
            continue
        for imported, allowed in ONLY_IN.items():
            if within(name, imported) and not any(within(module, a) for a in allowed):
                found.append(f"{where} imports {name}: only {sorted(allowed)} may")
        for imported, ending in ONLY_IN_NAMED.items():
            if within(name, imported) and not module.endswith(ending):
                found.append(f"{where} imports {name}: only modules named *{ending} may")
        for importer, forbidden in NEVER.items():
            if not within(module, importer) or within(name, importer):
                continue
            for banned in forbidden:
                if within(name, banned):
                    found.append(f"{where} imports {name}: {importer} must not import {banned}")
        if module not in ENVIRONMENT_READERS and name in {f"os.{n}" for n in ENVIRONMENT_NAMES}:
            found.append(f"{where} imports {name}: only the settings read the environment")
    if module not in ENVIRONMENT_READERS:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ENVIRONMENT_NAMES:
                found.append(
                    f"{module}:{node.lineno} reads .{node.attr}: only the settings read the "
                    "environment"
                )
    readers = FILE_READERS.get(module, frozenset())
    if readers is not None:
        owner = _functions(tree)
        for node in ast.walk(tree):
            name = _called_name(node) if isinstance(node, ast.Call) else ""
            if name in FILE_CALLS and owner.get(node) not in readers:
                found.append(f"{module}:{node.lineno} calls {name}(): only the settings read files")
    return found


def _tool_violations(source: Source) -> list[str]:
    """run.py and bench/ are tools around the app: of the rules only "who starts the app"."""
    allowed = ONLY_IN["server.app"]
    return [
        f"{source.module}:{line} imports {name}: only {sorted(allowed)} may"
        for line, name in imported_names(ast.parse(source.text))
        if within(name, "server.app") and source.module not in allowed
    ]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def app_sources() -> list[Source]:
    """Every module of the app and of its tools (the tests may import anything)."""
    paths = [*sorted((ROOT / "server").rglob("*.py")), *sorted((ROOT / "bench").glob("*.py"))]
    paths.append(ROOT / "run.py")
    return [Source(module_name(p), p.read_text(encoding="utf-8")) for p in paths if p.exists()]


SOURCES = app_sources()


@pytest.mark.parametrize("source", SOURCES, ids=lambda source: source.module)
def test_module_keeps_the_dependency_rules(source: Source) -> None:
    assert violations(source) == []


def test_every_module_of_the_app_is_walked() -> None:
    modules = {source.module for source in SOURCES}
    assert {
        "server.store",
        "server.store_sqlite",
        "server.store_sqlite_steps",
        "server.store_postgres_edits",
        "server.streaming",
        "server.generators.offline",
        "run",
    } <= modules


def test_the_rules_name_modules_that_exist() -> None:
    # A module renamed or split must take its rules with it, not leave a rule that guards nothing.
    modules = {source.module for source in SOURCES}
    named = {m for allowed in ONLY_IN.values() for m in allowed}
    named |= set(NEVER) | ENVIRONMENT_READERS | set(FILE_READERS)
    for name in named:
        assert any(within(module, name) for module in modules), f"no module {name}"
    for ending in ONLY_IN_NAMED.values():
        assert any(module.endswith(ending) for module in modules), f"no module *{ending}"


# The checker itself, on modules written for the purpose.

BAD_MODULES: Mapping[str, tuple[Source, str]] = {
    "new-module-imports-sqlite3": (
        Source("server.newcomer", "import sqlite3\n"),
        "server.newcomer:1 imports sqlite3",
    ),
    "the-interface-imports-a-driver": (
        Source("server.store", "import psycopg\n"),
        "server.store:1 imports psycopg",
    ),
    "sqlite-store-imports-psycopg": (
        Source("server.store_sqlite", "from psycopg_pool import AsyncConnectionPool\n"),
        "server.store_sqlite:1 imports psycopg_pool",
    ),
    "postgres-store-bypasses-its-pool": (
        Source("server.store_postgres", "from psycopg_pool import AsyncConnectionPool\n"),
        "server.store_postgres:1 imports psycopg_pool",
    ),
    "postgres-store-imports-sqlite3": (
        Source("server.store_postgres", "import sqlite3\n"),
        "server.store_postgres:1 imports sqlite3",
    ),
    "postgres-store-part-imports-sqlite3": (
        Source("server.store_postgres_steps", "import sqlite3\n"),
        "server.store_postgres_steps:1 imports sqlite3",
    ),
    "sqlite-store-part-imports-psycopg": (
        Source("server.store_sqlite_edits", "import psycopg\n"),
        "server.store_sqlite_edits:1 imports psycopg",
    ),
    "store-part-imports-its-store": (
        Source("server.store_sqlite_steps", "from server.store_sqlite import SESSION_MEMORY\n"),
        "server.store_sqlite_steps:1 imports server.store_sqlite",
    ),
    "store-part-imports-the-interface": (
        Source("server.store_postgres_edits", "from server.store import Conflict\n"),
        "server.store_postgres_edits:1 imports server.store",
    ),
    "from-import-of-the-driver": (
        Source("server.records", "from sqlite3 import Row\n"),
        "server.records:1 imports sqlite3",
    ),
    "openai-outside-llm": (
        Source("server.steps", "from openai import AsyncOpenAI\n"),
        "server.steps:1 imports openai",
    ),
    "diskcache-outside-cache": (
        Source("server.store", "import diskcache.core\n"),
        "server.store:1 imports diskcache.core",
    ),
    "the-cache-interface-imports-diskcache": (
        Source("server.cache", "import diskcache\n"),
        "server.cache:1 imports diskcache",
    ),
    "redis-outside-its-modules": (
        Source("server.cache", "from redis.asyncio import Redis\n"),
        "server.cache:1 imports redis.asyncio",
    ),
    "redis-in-a-module-merely-containing-the-word": (
        Source("server.redis_things", "import redis\n"),
        "server.redis_things:1 imports redis",
    ),
    "app-imported-by-a-module": (
        Source("server.routes", "from server import app\n"),
        "server.routes:1 imports server.app",
    ),
    "streaming-imports-starlette": (
        Source("server.streaming", "from starlette.responses import Response\n"),
        "server.streaming:1 imports starlette.responses",
    ),
    "generator-imports-the-store": (
        Source("server.generators.newcomer", "from server.store import Store\n"),
        "server.generators.newcomer:1 imports server.store",
    ),
    "generator-imports-anyio": (
        Source("server.generators.question", "import anyio\n"),
        "server.generators.question:1 imports anyio",
    ),
    "environment-read-outside-settings": (
        Source("server.llm", "import os\nkey = os.environ['OPENAI_API_KEY']\n"),
        "server.llm:2 reads .environ",
    ),
    "getenv-imported-outside-settings": (
        Source("server.newcomer", "from os import getenv\n"),
        "server.newcomer:1 imports os.getenv",
    ),
    "toml-read-outside-settings": (
        Source("server.newcomer", "import tomllib\n"),
        "server.newcomer:1 imports tomllib",
    ),
    "file-read-outside-settings": (
        Source("server.newcomer", "from pathlib import Path\ntext = Path('x').read_text()\n"),
        "server.newcomer:2 calls read_text()",
    ),
    "bank-read-outside-load-bank": (
        Source("server.generators.bank", "def other():\n    return open('x')\n"),
        "server.generators.bank:2 calls open()",
    ),
    "settings-sections-import-the-loader": (
        Source("server.settings_sections", "from server.settings import load\n"),
        "server.settings_sections:1 imports server.settings",
    ),
    "settings-sections-read-the-environment": (
        Source("server.settings_sections", "import os\nport = os.environ.get('PORT')\n"),
        "server.settings_sections:2 reads .environ",
    ),
    "settings-sections-read-toml": (
        Source("server.settings_sections", "import tomllib\n"),
        "server.settings_sections:1 imports tomllib",
    ),
    "a-tool-starts-the-app-in-process": (
        Source("bench.cases", "from server.app import create_app\n"),
        "bench.cases:1 imports server.app",
    ),
    "relative-import": (
        Source("server.newcomer", "from . import store\n"),
        "server.newcomer:1 relative import .",
    ),
}


@pytest.mark.parametrize(("source", "expected"), BAD_MODULES.values(), ids=list(BAD_MODULES))
def test_checker_reports_a_forbidden_import(source: Source, expected: str) -> None:
    found = violations(source)
    assert any(line.startswith(expected) for line in found), found


@pytest.mark.parametrize(
    "source",
    [
        Source("server.store_sqlite", "import sqlite3\n"),
        Source("server.store_sqlite_steps", "import sqlite3\nfrom server.records import Step\n"),
        Source("server.store_postgres_edits", "from server.store_postgres_steps import touch\n"),
        Source("server.db_postgres", "import psycopg\nfrom psycopg_pool import X\n"),
        Source("server.db_sqlite", "import sqlite3\n"),
        Source("server.ratelimit_redis", "from redis.asyncio import Redis\nimport redis\n"),
        Source("server.llm", "import openai\nimport httpx2\n"),
        Source("server.app", "import httpx2\n"),
        Source("run", "from server.app import create_app\n"),
        Source("server.settings", "import os, tomllib\nx = os.environ.get('A')\nopen('f')\n"),
        Source("server.settings", "from server.settings_sections import Settings\n"),
        Source(
            "server.settings_sections", "from pathlib import Path\nfrom pydantic import Field\n"
        ),
        Source("server.generators.offline", "from server.generators.bank import load_bank\n"),
        Source("server.generators.bank", "def load_bank():\n    return open('x')\n"),
        Source("server.watchdog", "import os\npid = os.getpid()\n"),
        Source("server.routes", "from starlette.responses import Response\n"),
        Source("bench.client", "import os, httpx\nx = os.environ.get('A')\n"),
    ],
    ids=lambda source: source.module,
)
def test_checker_allows_what_the_rules_allow(source: Source) -> None:
    assert violations(source) == []
