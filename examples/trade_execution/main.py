"""Trade execution: validate, check risk, have a person approve large trades, execute (the
pivot), settle.

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

import asyncio
import functools
import json
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import attrs

import statesaga
from statesaga import Retry, RunHandle, Saga, Step, Wait

from .. import _input, _runner
from . import actions, compensations
from .actions import is_large_trade
from .services import world

#: How long a person has to approve a large trade before the cash set aside is released.
APPROVAL_WINDOW = timedelta(minutes=15)


@attrs.frozen
class Trade:
    """The saga's input: ``TradeExecutionSaga(trade_id=..., account_id=..., ...)``."""

    trade_id: str = attrs.field(validator=_input.non_empty)
    account_id: str = attrs.field(validator=_input.non_empty)
    symbol: str = attrs.field(validator=_input.non_empty)
    quantity: int = attrs.field(validator=_input.positive)
    price: float = attrs.field(validator=_input.money)


class TradeExecutionSaga(Saga):
    """Buy shares: checks and holds first, a person's approval for large trades, then the
    trade, which is then settled come what may."""

    steps = (
        Step("validate_order", actions.validate_order),
        Step("check_risk", actions.check_risk, compensate=compensations.release_hold),
        # Large trades only (small ones skip these three): compliance's automatic screening,
        # then a person's approval, a signal with {"approver": ..., "limit": ...}, recorded
        # once checked. No approval within the window fails the wait: the hold is released.
        Step("screen_large_trade", actions.screen_large_trade, when=is_large_trade),
        Wait("trade_approved", timeout=APPROVAL_WINDOW, when=is_large_trade),
        Step(
            "record_approval",
            actions.record_approval,
            compensate=compensations.withdraw_approval,
            when=is_large_trade,
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


class ShortWindowTradeSaga(TradeExecutionSaga):
    """The same saga, recorded under the same name, with an approval window of one second:
    the story in which nobody approves should not take a quarter of an hour."""

    name = TradeExecutionSaga.name
    steps = (
        *TradeExecutionSaga.steps[:3],
        Wait("trade_approved", timeout=1.0, when=is_large_trade),
        *TradeExecutionSaga.steps[4:],
    )


#: The stories' input, each story changing what it needs.
_trade = functools.partial(
    TradeExecutionSaga,
    account_id="ACC-123",
    symbol="AAPL",
    quantity=100,
    price=150.00,
)

#: What the approver sends: who approves, and up to what amount they may.
APPROVAL = {"approver": "m.jones", "limit": 250_000}


def _flaky_ledger() -> None:
    world.ledger.unavailable = 2


async def _approve(run: RunHandle, recorded: _runner.Recorded | None) -> None:
    """A person approves the trade while its run waits for it.

    In memory only the run's handle can signal it. A stored run can be signalled from any
    process that knows its id: ``statesaga.signal(store, run_id, ...)`` in code, as here, or
    ``statesaga runs signal`` on the command line.
    """
    await asyncio.sleep(0.1)  # the person reads the ticket; the run waits meanwhile
    if recorded is None:
        print(f"   {APPROVAL['approver']} approves: await run.signal('trade_approved', {APPROVAL})")
        await run.signal("trade_approved", APPROVAL)
        return
    print(f"   {APPROVAL['approver']} approves, as from the command line:")
    print(
        f"     statesaga runs signal {run.saga_id} trade_approved"
        f" --data '{json.dumps(APPROVAL)}' --store {recorded.url}"
    )
    await statesaga.signal(recorded.store, run.saga_id, "trade_approved", APPROVAL)


async def _nobody_approves(run: RunHandle, recorded: _runner.Recorded | None) -> None:
    """Nobody approves the trade: its window closes."""
    print("   nobody approves it; the window closes")


STORIES = (
    _runner.Story(
        "A small trade: no screening nor approval (skipped); the ledger drops two calls and"
        " settlement pushes through",
        _trade(trade_id="TRD-1001"),
        setup=_flaky_ledger,
    ),
    _runner.Story(
        "A large trade: screened, then approved by a person while the run waits",
        _trade(trade_id="TRD-1002", quantity=1_000),
        meanwhile=_approve,
    ),
    _runner.Story(
        "A large trade nobody approves within its window (one second here): the hold is released",
        ShortWindowTradeSaga(
            trade_id="TRD-1003", account_id="ACC-123", symbol="AAPL", quantity=1_000, price=150.00
        ),
        meanwhile=_nobody_approves,
    ),
)


def main(argv: Sequence[str] | None = None) -> None:
    """Tell a trade without approval, one approved and one that nobody approves."""
    _runner.main(__doc__ or "", world, STORIES, argv)
