"""How `make test` shares the suite between two xdist processes (`-n 2 --dist loadfile`).

Each process has its own session fixtures (Redis, PostgreSQL, the fake upstream as a process),
ports (free ones, asked of the kernel) and temp dirs (pytest's per-process basetemp, mkdtemp for
the servers), so the two never share a server, a port or a file. A module runs whole in one
process, so its module-scoped fixtures (Chromium, a shared cluster) are built once.

The serial modules start Chromium or several app processes (a cluster of three workers and
nginx, `workers` = N): they load the two cores hardest and wait on real time (leases, heartbeats,
a paused owner). Under `--dist loadfile` they are one unit of work, run in one process one after
the other as in a plain run, so two of them never compete for the CPU; that unit starts first,
being the longest, and the other modules go to whichever process is free meanwhile.

xdist's scheduler runs in the controlling process, which collects nothing: it knows a module by
its path alone, so a module is serial when one of its functions takes a SERIAL_FIXTURES argument
(read from its source), or when it is in PROCESS_MODULES. tests/test_parallel.py checks this
against every collected test's real fixtures."""

from __future__ import annotations

import ast
import functools
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from xdist.remote import Producer
    from xdist.scheduler import LoadFileScheduling

# The fixtures that start Chromium (`context` is a page's, on the module's `browser`) or a cluster.
SERIAL_FIXTURES = frozenset({"browser", "context", "cluster", "start_cluster", "shared_cluster"})
# Modules that start several app processes without one of those fixtures.
PROCESS_MODULES = frozenset({"test_workers.py"})  # `run.py` with workers = 2 and its workers
SERIAL_UNIT = "chromium and clusters"


@functools.cache
def serial(path: Path) -> bool:
    """Whether the test module at `path` runs in the serial unit."""
    if path.name in PROCESS_MODULES:
        return True
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return False  # pytest reports it as it collects it
    return any(
        argument.arg in SERIAL_FIXTURES
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for argument in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)
    )


def scope(root: Path, nodeid: str) -> str:
    """A test's unit of work: SERIAL_UNIT, or its module's path (as loadfile's)."""
    path = nodeid.split("::", 1)[0]
    return SERIAL_UNIT if serial(root / path) else path


@pytest.hookimpl(optionalhook=True)  # an xdist hook: xdist is in the dev dependencies
def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadFileScheduling | None:
    if config.getvalue("dist") != "loadfile":
        return None  # another --dist asked for on the command line: xdist's own
    # Imported here, where xdist runs: a plain run works in a venv made before xdist was added.
    from tests.parallel_xdist import SerialUnitScheduling

    return SerialUnitScheduling(config, log)
