from __future__ import annotations

import os

import pytest

from statesaga.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A clock whose sleeps return at once."""
    return FakeClock()


#: ``ci`` or ``full``: which size of the chaos tests to run (``make chaos-ci``, ``make chaos``).
CHAOS_VARIABLE = "STATESAGA_CHAOS"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos",
        choices=("ci", "full"),
        default=None,
        help=f"run the tests marked chaos, at this size (or set ${CHAOS_VARIABLE})",
    )


def pytest_configure(config: pytest.Config) -> None:
    chosen = config.getoption("--chaos")
    if chosen:
        os.environ[CHAOS_VARIABLE] = chosen


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked chaos (minutes of killed processes) run only when asked for."""
    mode = os.environ.get(CHAOS_VARIABLE, "")
    if mode in ("ci", "full"):
        return
    if mode:
        raise pytest.UsageError(f"${CHAOS_VARIABLE}={mode!r}: use ci or full (or leave it unset)")
    skip = pytest.mark.skip(
        reason=f"a chaos test: run it with `make chaos-ci` or `make chaos` "
        f"(${CHAOS_VARIABLE}=ci|full, or pytest --chaos=ci|full)"
    )
    for item in items:
        if item.get_closest_marker("chaos") is not None:
            item.add_marker(skip)
