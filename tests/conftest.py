from __future__ import annotations

import pytest

from statesaga.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A clock whose sleeps return at once."""
    return FakeClock()
