"""One step's calls: the attempt loop every action and compensation goes through."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, Final

from .._faults import FAULTS, injected
from ..compiler import StepPlan
from ..context import Context
from ..definition import Action, Retry
from ..errors import (
    InvalidResultError,
    OutcomeUnknownError,
    SagaDeadlineError,
    StepTimeoutError,
    StoreError,
)
from ..vocabulary import COMPENSATION_FAILED, FAILED, IN_DOUBT, PENDING, SUCCEEDED, SagaTrigger
from . import deadline

if TYPE_CHECKING:
    from .driver import Driver

#: How a call ended: the phase its step entered, and the error if it did not succeed.
Outcome = tuple[str, BaseException | None]
SUCCESS: Final[Outcome] = (SUCCEEDED, None)
NOT_STARTED: Final[Outcome] = (PENDING, None)
_PROCEED: Final = SagaTrigger.PROCEED.value
_CUT_SHORT: Final = (StepTimeoutError, OutcomeUnknownError)  # a tuple: a union is built per use


async def attempts(driver: Driver, plan: StepPlan, back: bool) -> Outcome:
    """Call a step's action (``back``: its compensation) until it succeeds or its retries run
    out, telling the recorder before each call and after the outcome."""
    state, recorder = driver.state, driver.recorder
    name = plan.name
    first = 1
    if state.resumed and name in state.resumed:
        first = state.resumed.pop(name)  # its process died while it ran: call it again
    elif not back and (state.failing or state.halting or driver.cancel_requested):
        return NOT_STARTED  # a sibling started in the same batch has already failed
    if back:
        fn, retry = plan.compensate, plan.compensate_retry
        t_first, t_again = plan.t_compensate, plan.t_retry_compensation
        assert fn is not None
    else:
        fn, retry = plan.action, plan.retry
        t_first, t_again = plan.t_start, plan.t_retry
    # A step pushed forward by a person continues its attempt numbers but gets its whole
    # retry budget again; if it was in doubt, it stays so until it succeeds.
    pushed = state.pushing.get(name) if state.pushing and not back else None
    spent = 0 if pushed is None else first - 1
    # Once an attempt timed out, its effect may exist even if later attempts raise.
    doubt = bool(pushed)
    previous: BaseException | None = None
    attempt = first - 1
    while True:
        attempt += 1
        driver.fire(t_first if attempt == 1 else t_again, attempt, previous)
        ctx = Context(state.data, state.results_view, state.saga_id, name, attempt, back)
        pending = recorder.before_call(state)  # write-ahead: recorded as started first
        if pending is not None:
            await pending
        try:
            if plan.timeout is None and state.deadline_at is None and not FAULTS.get():
                value = await fn(ctx)
            else:
                value = await _limited(driver, fn, ctx, plan, back)
        except (Exception, asyncio.CancelledError) as error:
            _raise_if_cancelled(error)
            doubt = doubt or _interrupted(error)
            if (not back and isinstance(error, SagaDeadlineError)) or not retry.should_retry(
                error, attempt - spent
            ):
                outcome = _give_up(driver, plan, error, attempt, doubt, back)
                break
            previous = error
            if driver.observation is not None:
                driver.observation.retrying(name, attempt, error, compensating=back)
            await _pause(driver, retry, attempt - spent + 1, plan, back)
            if not back and deadline.past(driver, plan, starting=False):
                late = deadline.error(driver, name, interrupted=False)
                outcome = _give_up(driver, plan, late, attempt, doubt, back)
                break
        else:
            outcome = (
                _undone(driver, plan, attempt) if back else _accept(driver, plan, value, attempt)
            )
            if ctx.emitted and outcome is SUCCESS:
                state.outbox += ctx.emitted  # committed with the call's success
            break
    pending = recorder.after_outcome(state)
    if pending is not None:
        await pending
    return outcome


def _accept(driver: Driver, plan: StepPlan, value: Any, attempt: int) -> Outcome:
    """Take an action's return value: keep it, or reject what is not a mapping."""
    state = driver.state
    if value is None:
        value = {}
    elif type(value) is not dict and not isinstance(value, Mapping):
        # It ran, so it may have had an effect: compensate it, never retry it.
        bad = InvalidResultError(state.saga_id, plan.name, value)
        driver.fire(plan.t_invalid_result, attempt, bad)
        return IN_DOUBT, bad
    try:
        result = driver.recorder.result(value)
    except StoreError as error:
        driver.fire(plan.t_invalid_result, attempt, error)
        return IN_DOUBT, error
    state.results[plan.name] = result  # kept before dependants start
    driver.fire(plan.t_succeed, attempt)
    state.completed.append(plan.name)
    return SUCCESS


def _undone(driver: Driver, plan: StepPlan, attempt: int) -> Outcome:
    """A compensation finished."""
    driver.fire(plan.t_compensation_done, attempt)
    driver.state.compensated.append(plan.name)
    _proceed(driver)
    return SUCCESS


def _give_up(
    driver: Driver, plan: StepPlan, error: BaseException, attempt: int, doubt: bool, back: bool
) -> Outcome:
    """A call's last attempt failed: after a timeout an action's outcome is unknown."""
    if back:
        driver.fire(plan.t_compensation_fail, attempt, error)
        _proceed(driver)
        return COMPENSATION_FAILED, error
    if doubt or _interrupted(error):
        driver.fire(plan.t_time_out, attempt, error)
        return IN_DOUBT, error
    driver.fire(plan.t_fail, attempt, error)
    return FAILED, error


def _proceed(driver: Driver) -> None:
    # A reopened chain returns to "compensating" after each compensation: the ones it
    # retries need not be neighbours in the chain.
    if driver.state.reopening and driver.c.sequential:
        driver.fire(_PROCEED)


async def _pause(driver: Driver, retry: Retry, attempt: int, plan: StepPlan, back: bool) -> None:
    delay = retry.delay_before(attempt, driver.clock.random())
    if not back and deadline.binds(driver, plan):
        delay = min(delay, deadline.left(driver))  # not past it
    await driver.clock.sleep(delay)


def _limited(
    driver: Driver, fn: Action, ctx: Context, plan: StepPlan, back: bool
) -> Awaitable[Any]:
    """``fn(ctx)`` with what may stop it: an injected fault, the step's timeout, or the
    saga's deadline."""
    if FAULTS.get():
        fault = injected(plan.name, back)
        if fault is not None:
            raise fault
    timeout = plan.timeout
    cut = False  # whether the saga's deadline, not the step's timeout, sets the limit
    # The pivot itself is never cut short: its outcome must not become unknown.
    if not back and not plan.pivot and deadline.binds(driver, plan):
        left = deadline.left(driver)
        if timeout is None or left < timeout:
            timeout, cut = left, True
    if timeout is None:
        return fn(ctx)  # type: ignore[no-any-return]
    return _timed(driver, fn, ctx, plan, timeout, cut)


async def _timed(
    driver: Driver, fn: Action, ctx: Context, plan: StepPlan, seconds: float, cut: bool
) -> Any:
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            return await fn(ctx)
    except TimeoutError:
        if not scope.expired():
            raise
        if cut:
            raise deadline.error(driver, plan.name, interrupted=True) from None
        raise StepTimeoutError(driver.state.saga_id, plan.name, seconds) from None


def _interrupted(error: BaseException) -> bool:
    """Whether ``error`` cut an attempt short, leaving its effect unknown."""
    return isinstance(error, _CUT_SHORT) or (
        isinstance(error, SagaDeadlineError) and error.interrupted
    )


def _raise_if_cancelled(error: BaseException) -> None:
    """Re-raise a cancellation aimed at this task; one an action raised on its own is a failure."""
    if isinstance(error, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise error
