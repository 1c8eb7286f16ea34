"""`make run`: only the app's own dependencies, and the port from `PORT`."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def dry_run(*args: str) -> list[str]:
    """What make would do from scratch (-B: as if nothing was installed yet), not doing it."""
    if shutil.which("make") is None:
        pytest.fail("make is missing")
    result = subprocess.run(
        ["make", "-nB", *args], cwd=ROOT, capture_output=True, text=True, timeout=30, check=True
    )
    return result.stdout.splitlines()


def test_make_run_installs_no_dev_tools_and_takes_a_port() -> None:
    lines = dry_run("run", "PORT=9000")
    installs = [line for line in lines if "pip install" in line and "-e" in line]
    assert installs and all("[dev]" not in line for line in installs)
    assert lines[-1].split()[-3:] == ["run.py", "--port", "9000"]


def test_make_run_without_port_leaves_it_to_the_settings() -> None:
    assert "--port" not in dry_run("run")[-1]


def test_make_test_still_installs_the_dev_tools() -> None:
    assert any("'.[dev]'" in line for line in dry_run("test"))


def test_the_offline_bank_is_declared_as_package_data() -> None:
    """Declared, so setuptools neither drops the JSON nor warns 'Package would be ignored'."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["packages"]["find"]["namespaces"] is True
    assert config["package-data"]["server.generators.bank"] == ["*.json"]
    assert list((ROOT / "server" / "generators" / "bank").glob("*.json"))


def test_make_cluster_runs_the_cluster_program_on_port_without_a_browser() -> None:
    lines = dry_run("cluster", "PORT=9000")
    assert lines[-1].endswith("python -m server.cluster --port 9000")
    # The servers it runs are installed if missing; Chromium, for the browser tests, is not.
    assert any('case " nginx postgresql redis-server "' in line for line in lines)
    assert all("[dev]" not in line for line in lines if "pip install" in line)
