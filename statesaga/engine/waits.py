"""A wait's course: it begins, then takes its signal, times out, or is given up.

An in-memory run's wait awaits its signal in the run's own task. A recorded run's wait
parks instead (``PARKED``): once nothing else of the run is running, its recorder commits the
run as waiting and the run's task ends; whoever drives it next (the process that started
it, or a worker) finds the signal or the passed timeout in the store.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from ..compiler import StepPlan
from ..errors import SignalRefused, WaitTimeoutError
from ..vocabulary import FAILED, SAGA_REGION, SUCCEEDED, TERMINAL, WAITING, Phase
from . import deadline
from .calls import SUCCESS, Outcome

if TYPE_CHECKING:
    from .driver import Driver

#: A recorded run's wait that has no signal yet: the run parks once nothing else runs.
PARKED: Final[Outcome] = (WAITING, None)


def is_waiting(driver: Driver, plan: StepPlan) -> bool:
    """Whether ``plan`` (a wait) is in its ``waiting`` state."""
    region = SAGA_REGION if driver.c.sequential else plan.name
    return driver.state.config.get(region) == plan.state(Phase.WAITING)


def due(driver: Driver, plan: StepPlan) -> float:
    """When ``plan``'s wait stops waiting (run-clock time): its timeout, or the saga's
    deadline where that binds; ``inf`` for neither."""
    state = driver.state
    when = math.inf
    if plan.timeout is not None:
        when = state.wait_started[plan.name] + plan.timeout
    if deadline.binds(driver, plan):
        assert state.deadline_at is not None
        when = min(when, state.deadline_at)
    return when


async def wait_for(driver: Driver, plan: StepPlan) -> Outcome:
    """Take ``plan``'s wait from where it is to its outcome (or to ``PARKED``)."""
    state, name = driver.state, plan.name
    if name in state.pushing:
        # A person pushed the halted run forward: the wait begins again, its timeout afresh.
        state.resumed.pop(name, None)
        state.wait_started[name] = driver.now()
    if not is_waiting(driver, plan):
        if state.failing or state.halting or driver.cancel_requested:
            return (Phase.PENDING.value, None)  # a sibling already failed: it never begins
        driver.fire(plan.t_wait)
        state.wait_started[name] = driver.now()
        pending = driver.recorder.before_call(state)  # recorded as waiting
        if pending is not None:
            await pending
    while True:
        outcome = _settle(driver, plan)
        if outcome is not None:
            break
        if driver.recorder.parks:
            return PARKED
        await driver.sleep_until_signal(name, due(driver, plan))
    pending = driver.recorder.after_outcome(state)
    if pending is not None:
        await pending
    return outcome


def _settle(driver: Driver, plan: StepPlan) -> Outcome | None:
    """The wait's outcome if it has one now: its signal came, or it is given up or timed
    out; ``None`` while it still waits."""
    state, name = driver.state, plan.name
    payload = state.signals.get(name)
    if payload is not None:
        driver.fire(plan.t_signal)
        return _succeed(driver, plan, payload)
    if state.failing or state.halting or driver.cancel_requested:
        error = (
            state.error
            if state.failing or state.halting
            else asyncio.CancelledError(f"run {state.saga_id} was cancelled while it waited")
        )
        driver.fire(plan.t_fail, 0, error)
        return FAILED, error
    now = driver.now()
    if plan.timeout is not None and now >= state.wait_started[name] + plan.timeout:
        if plan.on_timeout == "continue":
            driver.fire(plan.t_time_out)
            return _succeed(driver, plan, {})
        late = WaitTimeoutError(state.saga_id, name, plan.timeout)
        driver.fire(plan.t_time_out, 0, late)
        return FAILED, late
    if deadline.binds(driver, plan) and deadline.left(driver) <= 0.0:
        late_run = deadline.error(driver, name, interrupted=False, waiting=True)
        driver.fire(plan.t_fail, 0, late_run)
        return FAILED, late_run
    return None


def _succeed(driver: Driver, plan: StepPlan, payload: Mapping[str, Any]) -> Outcome:
    state = driver.state
    state.results[plan.name] = payload
    state.completed.append(plan.name)
    return SUCCESS


def check_signal(driver: Driver, event: str) -> None:
    """Raise ``SignalRefused`` unless the run has a wait for ``event`` that is not over."""
    state, c = driver.state, driver.c
    plan = c.by_name.get(event)
    if plan is None or not plan.wait:
        waits = [p.name for p in c.steps if p.wait]
        raise SignalRefused(
            state.saga_id,
            event,
            f"saga {c.name} has no wait for it (its waits: {', '.join(waits) or 'none'})",
        )
    if state.status in TERMINAL:
        raise SignalRefused(state.saga_id, event, f"the run has finished: it is {state.status}")
    if driver.cancel_requested:
        raise SignalRefused(state.saga_id, event, "the run was asked to stop (cancel)")
    if event in state.signals:
        raise SignalRefused(state.saga_id, event, "it was already signalled")
    phase = state.outcomes.get(event)
    if phase is not None or event in state.completed:
        raise SignalRefused(state.saga_id, event, f"its wait is over ({phase or SUCCEEDED})")
