"""tests/parallel.py: which modules `make test` runs in its serial unit."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.parallel import SERIAL_FIXTURES, SERIAL_UNIT, scope, serial

TESTS = Path(__file__).resolve().parent


def test_every_collected_test_that_starts_chromium_or_a_cluster_is_in_the_serial_unit(
    request: pytest.FixtureRequest,
) -> None:
    """Read from each test's real fixture closure, for every test this run collected (all of
    them under `make test`): the scheduler, which reads only the modules' source, agrees."""
    missed = sorted(
        {
            item.nodeid.split("::", 1)[0]
            for item in request.session.items
            if SERIAL_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            and not serial(item.path)
        }
    )
    assert missed == [], "add these modules to PROCESS_MODULES in tests/parallel.py"


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("test_browser.py", True),  # `context`
        ("test_browser_a11y.py", True),  # `browser`, in a module fixture
        ("test_cluster_drills.py", True),  # `cluster`, `start_cluster`
        ("test_cluster.py", True),  # `shared_cluster`
        ("test_workers.py", True),  # processes without a fixture
        ("test_store.py", False),
        ("test_parallel.py", False),
    ],
)
def test_a_module_is_serial_when_it_starts_chromium_or_a_cluster(
    module: str, expected: bool
) -> None:
    assert serial(TESTS / module) is expected


def test_the_serial_modules_are_one_unit_and_the_others_one_each() -> None:
    scopes = {
        nodeid: scope(TESTS.parent, nodeid)
        for nodeid in [
            "tests/test_browser.py::test_a[sqlite]",
            "tests/test_cluster_global.py::test_b",
            "tests/test_store.py::test_c[postgres]",
            "tests/test_store.py::test_d",
        ]
    }
    assert scopes == {
        "tests/test_browser.py::test_a[sqlite]": SERIAL_UNIT,
        "tests/test_cluster_global.py::test_b": SERIAL_UNIT,
        "tests/test_store.py::test_c[postgres]": "tests/test_store.py",
        "tests/test_store.py::test_d": "tests/test_store.py",
    }
