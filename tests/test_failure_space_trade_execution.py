"""examples/trade_execution under every generated fault and crash point, checked on the
broker's simulated back office: holds, fills, cash and positions.

The trade is a small one: a large one waits for a person's approval, whose payload (an
approver and a limit) the generated scenarios do not send.
"""

from __future__ import annotations

import pytest

from examples.trade_execution import TradeExecutionSaga
from examples.trade_execution.services import INITIAL_CASH, world
from statesaga import SagaResult, SagaStatus
from statesaga.testing import Scenario, scenarios

TRADE = {
    "trade_id": "TRD-1001",
    "account_id": "ACC-123",
    "symbol": "AAPL",
    "quantity": 100,
    "price": 150.00,
}
AMOUNT = 100 * 150.00


def check_back_office(result: SagaResult, scenario: Scenario) -> None:
    """Whatever was retried or run again: one hold, one fill and one settlement at most; a
    completed trade is filled and settled once with its hold lifted, a compensated one left
    no hold and no fill, one that failed past the pivot keeps its hold until it is settled."""
    holds, fills, ledger = world.risk.holds, world.exchange.fills, world.ledger
    assert len(holds) <= 1, f"{len(holds)} holds for one trade"
    assert len(fills) <= 1, f"bought {len(fills)} times"
    assert len(ledger.settled) <= 1, f"settled {len(ledger.settled)} times"
    settled = bool(ledger.settled)
    spent = AMOUNT if settled else 0.0
    assert ledger.cash == {**INITIAL_CASH, "ACC-123": INITIAL_CASH["ACC-123"] - spent}
    assert ledger.positions == ({("ACC-123", "AAPL"): 100} if settled else {})
    assert not (settled and holds), "the trade is settled and its cash still held"
    assert not settled or fills, "settled without a fill"
    assert world.compliance.approvals == {}, "a small trade needs no approval"
    if result.status is SagaStatus.COMPLETED:
        assert len(fills) == 1, "a completed trade is bought"
        assert settled, "a completed trade is settled"
        assert result.skipped_steps == ("screen_large_trade", "trade_approved", "record_approval")
        return
    if result.status is SagaStatus.COMPENSATED:
        assert fills == {}, "a compensated trade was bought"
        assert holds == {}, "a compensated trade's cash is still held"
        return
    # Failed: a release that gave up leaves the hold; past the pivot (a fill in doubt, a
    # settlement that gave up) the cash stays held until the fill is settled.
    if "check_risk" in result.compensation_errors:
        assert fills == {}, "bought, then compensated"
        assert len(holds) == 1, "the release gave up, yet the hold is gone"
    else:
        assert result.failed_step in ("execute_trade", "settle_trade")
        assert settled or len(holds) == 1, "an unsettled trade keeps its cash held"


@pytest.mark.parametrize("scenario", scenarios(TradeExecutionSaga), ids=str)
async def test_failure_space(scenario: Scenario) -> None:
    """Each fault and crash point ends as the machine predicts, the back office as
    check_back_office says."""
    outcome = await scenario.run(data=TRADE, setup=world.reset, check=check_back_office)
    assert outcome.ok, outcome.explain()
