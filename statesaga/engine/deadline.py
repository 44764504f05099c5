"""The saga's deadline: which steps it limits, and what happens once it has passed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..compiler import StepPlan
from ..errors import SagaDeadlineError
from ..vocabulary import IN_DOUBT

if TYPE_CHECKING:
    from .driver import Driver


def binds(driver: Driver, plan: StepPlan) -> bool:
    """Whether the saga's deadline still limits ``plan``: only before the pivot succeeds,
    and never a step a person pushed forward (asking for it is a decision to go on)."""
    state = driver.state
    return (
        state.deadline_at is not None
        and not state.pivoted
        and not plan.after_pivot
        and plan.name not in state.pushing
    )


def left(driver: Driver) -> float:
    """Seconds until the deadline passes (0 once it has)."""
    deadline_at = driver.state.deadline_at
    assert deadline_at is not None
    return max(0.0, deadline_at - driver.now())


def past(driver: Driver, plan: StepPlan, *, starting: bool = True) -> bool:
    """Whether the deadline keeps ``plan`` from another attempt.

    ``starting``: the step has not started yet, and the run now fails (between attempts
    the caller gives the step up instead).
    """
    state = driver.state
    if not binds(driver, plan) or left(driver) > 0.0:
        return False
    if starting and plan.name in state.resumed:
        # Its process died while it ran: it is not called again, so its effect is unknown.
        state.resumed.pop(plan.name)
        cut = error(driver, plan.name, interrupted=True)
        driver.fire(plan.t_time_out, 0, cut)
        state.settle(plan, IN_DOUBT, cut)
    elif starting and not state.failing:
        state.failing = True
        if state.error is None:
            state.error = error(driver, None, interrupted=False)
    return True


def error(
    driver: Driver, step: str | None, *, interrupted: bool, waiting: bool = False
) -> SagaDeadlineError:
    """The error of a run (or of its ``step``, or its wait) the deadline stopped."""
    return SagaDeadlineError(
        driver.state.saga_id,
        step,
        driver.c.deadline or 0.0,
        interrupted=interrupted,
        waiting=waiting,
    )
