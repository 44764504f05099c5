"""A conditional step's condition: it decides, when the step is ready, whether it runs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..compiler import StepPlan
from ..context import Context
from ..vocabulary import FAILED, SKIPPED
from .calls import NOT_STARTED, Outcome, attempts
from .waits import wait_for

if TYPE_CHECKING:
    from .driver import Driver


async def guarded(driver: Driver, plan: StepPlan) -> Outcome:
    """Run ``plan`` if its condition holds, else skip it; a condition that raises (or gives
    something else than a bool) fails the step, without retries."""
    state = driver.state
    if state.failing or state.halting or driver.cancel_requested:
        return NOT_STARTED
    assert plan.when is not None
    ctx = Context(state.data, state.results_view, state.saga_id, plan.name, 0, False)
    try:
        go = plan.when(ctx)
        if not isinstance(go, bool):
            raise TypeError(
                f"the condition of step {plan.name!r} returned {type(go).__name__}, not True "
                "or False"
            )
    except Exception as error:
        driver.fire(plan.t_fail, 0, error)
        outcome: Outcome = (FAILED, error)
    else:
        if go:
            return await (wait_for(driver, plan) if plan.wait else attempts(driver, plan, False))
        driver.fire(plan.t_skip)
        state.skipped.append(plan.name)
        outcome = (SKIPPED, None)
    pending = driver.recorder.after_outcome(state)
    if pending is not None:
        await pending
    return outcome
