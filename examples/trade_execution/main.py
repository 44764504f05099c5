"""Trade execution: validate, check risk, review large trades, execute (the pivot), settle.

Run ``python main.py`` in this folder or ``python -m examples.trade_execution`` from the
repository root; add ``--store sqlite:///trades.db`` to record the runs durably.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from examples._script import run_as_package

    run_as_package(__file__)

import functools
from collections.abc import Sequence
from typing import Any

import attrs

from statesaga import Retry, Saga, Step

from .. import _input, _runner
from . import actions, compensations
from .services import world


@attrs.frozen
class Trade:
    """The saga's input: ``TradeExecutionSaga(trade_id=..., account_id=..., ...)``."""

    trade_id: str = attrs.field(validator=_input.non_empty)
    account_id: str = attrs.field(validator=_input.non_empty)
    symbol: str = attrs.field(validator=_input.non_empty)
    quantity: int = attrs.field(validator=_input.positive)
    price: float = attrs.field(validator=_input.money)


class TradeExecutionSaga(Saga):
    """Buy shares: checks and holds first, then the trade, which is then settled come what may."""

    steps = (
        Step("validate_order", actions.validate_order),
        Step("check_risk", actions.check_risk, compensate=compensations.release_hold),
        Step(
            "review_large_trade",
            actions.review_large_trade,
            compensate=compensations.withdraw_approval,
        ),
        Step("execute_trade", actions.execute_trade, pivot=True, timeout=5.0),
        # Past the pivot nothing is undone: settlement is pushed through by retrying.
        Step(
            "settle_trade",
            actions.settle_trade,
            retry=Retry(attempts=5, delay=0.05, max_delay=1.0),
        ),
    )

    def __init__(self, **trade: Any) -> None:
        """Check the input as a ``Trade``; ``InvalidInputError`` names the field at fault."""
        super().__init__(**_input.structure(self.name, Trade, trade))


#: The stories' input, each story changing what it needs.
_trade = functools.partial(
    TradeExecutionSaga,
    account_id="ACC-123",
    symbol="AAPL",
    quantity=100,
    price=150.00,
)


def _flaky_ledger() -> None:
    world.ledger.unavailable = 2


STORIES = (
    _runner.Story(
        "A small trade: no review; the ledger drops two calls and settlement pushes through",
        _trade(trade_id="TRD-1001"),
        setup=_flaky_ledger,
    ),
    _runner.Story(
        "A large trade in a restricted symbol: compliance refuses, the hold is lifted",
        _trade(trade_id="TRD-1002", symbol="XYZ", quantity=10_000, price=20.00),
    ),
)


def main(argv: Sequence[str] | None = None) -> None:
    """Tell a settled trade and a compensated one."""
    _runner.main(__doc__ or "", world, STORIES, argv)
