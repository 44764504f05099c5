"""Drive one run through its compiled machine: retries, timeouts, compensation, cancellation.

One path for every run. Steps go forward and compensations go back through the same walk
(``Driver.walk``: each step once the steps it waits for are done, in dependency order one
way and in reverse the other), each call through the same attempt loop (``Driver.attempts``).
What a stored run does beyond an in-memory one is its recorder's business (``Recorder``).
"""

from __future__ import annotations

import asyncio
import enum
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, Final, TypeVar

from ._faults import FAULTS, injected
from .clock import Clock
from .compiler import CompiledSaga, StepPlan
from .context import Context
from .definition import Action, Retry
from .errors import (
    InvalidResultError,
    MachineError,
    OutcomeUnknownError,
    SagaDeadlineError,
    StepTimeoutError,
    StoreError,
)
from .observe.registry import RunObservation, begin
from .recorder import IN_MEMORY, Recorder
from .result import SagaResult, SagaStatus
from .run_state import RunState
from .vocabulary import (
    COMPENSATING,
    COMPENSATION_FAILED,
    FAILED,
    IN_DOUBT,
    PENDING,
    RUNNING,
    SUCCEEDED,
    SagaTrigger,
)

#: How a call ended: the phase its step entered, and the error if it did not succeed.
Outcome = tuple[str, BaseException | None]
_T = TypeVar("_T")
# The saga's own triggers as they are recorded: plain strings.
_ABORT: Final = SagaTrigger.ABORT.value
_COMPLETE: Final = SagaTrigger.COMPLETE.value
_FINISH: Final = SagaTrigger.FINISH.value
_GIVE_UP: Final = SagaTrigger.GIVE_UP.value
_HALT: Final = SagaTrigger.HALT.value
_PROCEED: Final = SagaTrigger.PROCEED.value
_PUSH_FORWARD: Final = SagaTrigger.PUSH_FORWARD.value
_REOPEN: Final = SagaTrigger.REOPEN.value
_START: Final = SagaTrigger.START.value
_SUCCESS: Outcome = (SUCCEEDED, None)


class _End(enum.Enum):
    UNFINISHED = "unfinished"  # how a run cancelled past its pivot ends: it does not


_UNFINISHED: Final = _End.UNFINISHED
_NOT_STARTED: Outcome = (PENDING, None)


if sys.version_info >= (3, 12):

    def start_task(
        coro: Coroutine[Any, Any, _T], loop: asyncio.AbstractEventLoop, name: str
    ) -> asyncio.Task[_T]:
        """A task named ``name`` running ``coro``, started eagerly: a run whose steps never
        wait ends inside the call, with no trip through the loop."""
        return asyncio.Task(coro, loop=loop, name=name, eager_start=True)

else:

    def start_task(
        coro: Coroutine[Any, Any, _T], loop: asyncio.AbstractEventLoop, name: str
    ) -> asyncio.Task[_T]:
        """A task named ``name`` running ``coro`` (3.11 has no eager start)."""
        return loop.create_task(coro, name=name)


async def drive_to_result(driver: Driver, *, abandon_on_cancel: bool = False) -> SagaResult:
    """Drive a run in a task of its own and return its result.

    Cancelling the caller asks the run to stop: no new step starts, running ones are awaited,
    what took effect is compensated, then the cancellation is raised again; a second one
    abandons the run at once. With ``abandon_on_cancel`` the first one does (for durable runs
    driven by a worker, which another worker can take over).
    """
    loop = asyncio.get_running_loop()
    task = start_task(driver.drive(), loop, driver.state.compiled.task_name)
    if task.done():  # it ran to its end without waiting (an eager start)
        result = task.result()
        assert result is not None  # with no waiter, drive() raises instead of returning None
        return result
    return await _wait_for(driver, task, loop, abandon_on_cancel)


async def run_in_memory(
    compiled: CompiledSaga, data: Mapping[str, Any], saga_id: str, clock: Clock
) -> SagaResult:
    """Run a new saga that is not stored: ``drive_to_result`` of a run made only once this
    is awaited (many runs gathered at once do not all hold their state before one starts)."""
    driver = Driver(RunState.new(compiled, data, saga_id), clock, IN_MEMORY)
    return await drive_to_result(driver)


async def _wait_for(
    driver: Driver,
    task: asyncio.Task[SagaResult | None],
    loop: asyncio.AbstractEventLoop,
    abandon: bool,
) -> SagaResult:
    # The run lives in its own task so that a cancellation of the caller reaches it as a
    # request instead of cancelling a step whose effect would then be unknown. The caller
    # waits on a plain future that the task fills in: cancelling that future leaves the task
    # alone. (A Task subclass intercepting cancel() would be cheaper, but would also swallow
    # the cancellations asyncio.timeout() makes inside users' actions.)
    driver.waiter = loop.create_future()
    try:
        return await driver.waiter
    except asyncio.CancelledError:
        if task.done():
            raise
        if abandon:
            task.cancel()
            raise
        driver.cancel_requested = True
        driver.waiter = loop.create_future()
        try:
            await driver.waiter
        except asyncio.CancelledError:
            task.cancel()  # a second cancellation: abandon the run at once
        raise  # the caller's cancellation, now that the run has wound down


class Driver:
    """Drives one run: fires its transitions, calls its steps, tells its recorder."""

    __slots__ = (
        "c",
        "cancel_requested",
        "clock",
        "now",
        "observation",
        "recorder",
        "state",
        "waiter",
    )

    def __init__(self, state: RunState, clock: Clock, recorder: Recorder) -> None:
        self.state = state
        self.c = state.compiled
        self.clock = clock
        self.now = clock.time
        self.recorder = recorder
        self.observation: RunObservation | None = None
        self.cancel_requested = False
        self.waiter: asyncio.Future[SagaResult] | None = None

    # -- the machine ------------------------------------------------------------------------

    def fire(self, trigger: str, attempt: int = 0, error: BaseException | None = None) -> None:
        """Take ``trigger``'s edge from the current state of its region, or fail loudly."""
        config = self.state.config
        region = self.c.region_of_trigger.get(trigger, "")
        source = config.get(region, "")
        dest = self.c.table.get((source, trigger))
        if dest is None:
            raise MachineError(
                f"saga {self.c.name} run {self.state.saga_id}: no transition {trigger!r} from "
                f"{source!r}; this is a bug in statesaga, please report it"
            )
        config[region] = dest
        self.state.history.append((trigger, source, dest, self.now(), attempt, error))
        if self.observation is not None:
            self.observation.transition(trigger, attempt, error)

    async def _told(self, pending: Awaitable[Any] | None) -> None:
        if pending is not None:
            await pending

    # -- the run ----------------------------------------------------------------------------

    async def drive(self) -> SagaResult | None:
        """Drive the run to its end; hand the outcome to ``self.waiter`` if one is waiting."""
        c, state = self.c, self.state
        try:
            started = self.clock.monotonic()
            status = state.status
            self.observation = begin(c.name, state.saga_id, self.clock, state)
            if self.observation is not None:
                self.observation.started(resumed=status != c.initial)
            if c.deadline is not None and state.deadline_at is None:
                state.deadline_at = self.now() + c.deadline
            if status == c.initial:
                self.fire(_START)
                status = RUNNING
            elif status == FAILED and state.reopening:
                self.fire(_REOPEN)  # retry the compensations that failed
                status = COMPENSATING
            elif status == FAILED and state.pushing:
                # A person asked for another try of the steps that halted it past the pivot.
                if not c.sequential:
                    self.fire(_PUSH_FORWARD)
                for name in state.pushing:
                    self.fire(c.by_name[name].t_push_forward)
                status = RUNNING
            if status == RUNNING and not state.failing:
                await self.forward()
            ending = self._ending(status)
            if ending is _UNFINISHED:
                # Cancelled past the point of no return: nothing may be compensated, so the
                # run stays unfinished (a durable one can be resumed forward).
                await self._told(self.recorder.at_end(state))
                raise asyncio.CancelledError
            if ending is None:
                await self.back()
                if state.compensation_errors:
                    ending = SagaStatus.FAILED
                    self.fire(_GIVE_UP)
                else:
                    ending = SagaStatus.COMPENSATED
                    self.fire(_FINISH)
            result = self.result(ending, self.clock.monotonic() - started)
            await self._told(self.recorder.at_end(state))
        except BaseException as error:
            if self.observation is not None:
                # Cancelled past the pivot, abandoned, or stopped by a store error or a bug.
                self.observation.suspended(error)
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                if isinstance(error, asyncio.CancelledError):
                    waiter.cancel()
                else:
                    waiter.set_exception(error)
            if waiter is None or not isinstance(error, Exception):
                raise  # with no waiter yet, the task's own outcome carries it (an eager start)
            # The waiter has the error: re-raising would also log "exception never retrieved".
            return None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(result)
        return result

    def _ending(self, status: str) -> SagaStatus | _End | None:
        """How a run that went forward ends: a status, ``None`` when it goes back
        (compensates), or ``_UNFINISHED`` when it was cancelled past its pivot."""
        state = self.state
        if status != RUNNING:
            return None
        if state.halting:
            self.fire(_HALT)
            return SagaStatus.FAILED
        if len(state.completed) == len(self.c.steps):
            self.fire(_COMPLETE)
            return SagaStatus.COMPLETED
        if state.pivoted:
            return _UNFINISHED
        self.fire(_ABORT)
        return None

    def result(self, status: SagaStatus, duration: float) -> SagaResult:
        """The run's result, ended in ``status`` after ``duration`` seconds."""
        state = self.state
        return SagaResult(
            status=status,
            saga_id=state.saga_id,
            completed_steps=tuple(state.completed),
            compensated_steps=tuple(state.compensated),
            failed_step=state.failed_step,
            error=state.error,
            compensation_errors=state.compensation_errors,
            results=state.results,
            duration=duration,
            raw_history=state.history,
            messages=tuple(state.outbox),
        )

    # -- the walk ---------------------------------------------------------------------------

    async def walk(
        self,
        ready: deque[StepPlan],
        waiting: dict[str, int],
        call: Callable[[StepPlan], Coroutine[Any, Any, _T]],
        settled: Callable[[StepPlan, _T], Iterable[str]],
        gate: Callable[[deque[StepPlan]], None] | None,
        order: int,
    ) -> None:
        """Call the ``ready`` steps, and each step of ``waiting`` once the steps it waits for
        have settled, concurrently where the machine allows.

        ``settled`` notes a call's outcome and names the steps that waited for it; ``gate``
        may take steps off ``ready`` before they start; ``order`` (1 or -1) sorts outcomes
        that arrive together by step index, forward or back.
        """
        running: dict[asyncio.Task[_T], StepPlan] = {}
        try:
            while True:
                if ready and gate is not None:
                    gate(ready)
                if len(ready) == 1 and not running:
                    # Nothing else can become ready meanwhile: call it inline, no task.
                    plan = ready.popleft()
                    self._release(settled(plan, await call(plan)), waiting, ready)
                    continue
                if ready:
                    loop = asyncio.get_running_loop()
                    while ready:
                        plan = ready.popleft()
                        running[loop.create_task(call(plan))] = plan
                if not running:
                    return
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: order * running[t].index):
                    plan = running.pop(task)
                    self._release(settled(plan, task.result()), waiting, ready)
        finally:
            for task in running:  # only when abandoning the run
                task.cancel()

    def _release(
        self, names: Iterable[str], waiting: dict[str, int], ready: deque[StepPlan]
    ) -> None:
        for name in names:
            if name in waiting:
                waiting[name] -= 1
                if not waiting[name]:
                    ready.append(self.c.by_name[name])

    async def forward(self) -> None:
        """Run the steps not yet done, each once the steps it depends on have succeeded."""
        steps, done = self.c.steps, self.state.outcomes
        ok = {name for name, phase in done.items() if phase == SUCCEEDED}
        waiting = {p.name: sum(d not in ok for d in p.deps) for p in steps if p.name not in ok}
        ready = deque(p for p in steps if p.name in waiting and not waiting[p.name])
        await self.walk(ready, waiting, self._forward_call, self._forward_settled, self._gate, 1)

    def _forward_call(self, plan: StepPlan) -> Coroutine[Any, Any, Outcome]:
        return self.attempts(plan, compensating=False)

    def _forward_settled(self, plan: StepPlan, outcome: Outcome) -> Iterable[str]:
        if outcome is _NOT_STARTED or not self.state.settle(plan, *outcome):
            return ()
        return plan.dependants

    def _gate(self, ready: deque[StepPlan]) -> None:
        """Before steps start: the saga's deadline, and whether the run still goes forward."""
        state = self.state
        if state.deadline_at is not None:
            for plan in list(ready):
                self._past_deadline(plan)  # once passed, the run fails
        if state.failing or state.halting or self.cancel_requested:
            # No new step starts; a resumed run still finishes the steps that were running
            # when its process died (past a pivot they must go forward).
            owed = [p for p in ready if p.name in state.resumed]
            ready.clear()
            ready.extend(owed)

    async def back(self) -> None:
        """Compensate every step that took effect, each after the steps that depend on it."""
        state = self.state
        for plan in self.c.steps:
            if state.outcomes.get(plan.name) == RUNNING:  # its process died while it ran
                self.fire(plan.t_interrupt)
                state.outcomes[plan.name] = IN_DOUBT
        owed: tuple[str, ...] = (SUCCEEDED, IN_DOUBT, COMPENSATING)
        if state.reopening:
            owed += (COMPENSATION_FAILED,)
        targets = [
            p
            for p in self.c.steps
            if p.compensate is not None and state.outcomes.get(p.name) in owed
        ]
        names = {p.name for p in targets}
        waiting = dict.fromkeys(names, 0)
        for p in targets:
            for name in p.ancestors & names:
                waiting[name] += 1
        ready = deque(p for p in reversed(targets) if not waiting[p.name])
        by_name = self.c.by_name

        def settled(plan: StepPlan, outcome: Outcome) -> Iterable[str]:
            if outcome[1] is not None:
                state.compensation_errors[plan.name] = outcome[1]
            # Its dependencies are compensated after it, latest first, failed or not.
            return sorted(plan.ancestors & names, key=lambda n: -by_name[n].index)

        await self.walk(ready, waiting, self._back_call, settled, None, -1)

    def _back_call(self, plan: StepPlan) -> Coroutine[Any, Any, Outcome]:
        return self.attempts(plan, compensating=True)

    # -- one step's calls -------------------------------------------------------------------

    async def attempts(
        self,
        plan: StepPlan,
        *,
        compensating: bool,
        first: int = 1,
        previous: BaseException | None = None,
    ) -> Outcome:
        """Call a step's action (or its compensation) until it succeeds or its retries run
        out; ``first`` and ``previous`` continue a run of attempts begun elsewhere."""
        state, recorder, observation = self.state, self.recorder, self.observation
        name = plan.name
        if name in state.resumed:
            first = state.resumed.pop(name)  # its process died while it ran: call it again
        elif not compensating and (state.failing or state.halting or self.cancel_requested):
            return _NOT_STARTED  # a sibling started in the same batch has already failed
        if compensating:
            fn, retry = plan.compensate, plan.compensate_retry
            t_first, t_again = plan.t_compensate, plan.t_retry_compensation
            assert fn is not None
        else:
            fn, retry = plan.action, plan.retry
            t_first, t_again = plan.t_start, plan.t_retry
        # Once an attempt timed out, its effect may exist even if later attempts raise.
        doubt = previous is not None and _interrupted(previous)
        # A step pushed forward by a person continues its attempt numbers but gets its whole
        # retry budget again; if it was in doubt, it stays so until it succeeds.
        pushed = None if compensating else state.pushing.get(name)
        spent = first - 1 if pushed is not None else 0
        doubt = doubt or bool(pushed)
        attempt = first - 1
        while True:
            attempt += 1
            self.fire(t_first if attempt == 1 else t_again, attempt, previous)
            ctx = Context(
                state.data, state.results_view, state.saga_id, name, attempt, compensating
            )
            pending = recorder.before_call(state)  # write-ahead: recorded as started first
            if pending is not None:
                await pending
            try:
                value = await self._call(fn, ctx, plan, compensating)
            except (Exception, asyncio.CancelledError) as error:
                _raise_if_cancelled(error)
                doubt = doubt or _interrupted(error)
                if (
                    not compensating and isinstance(error, SagaDeadlineError)
                ) or not retry.should_retry(error, attempt - spent):
                    outcome = self._give_up(plan, error, attempt, doubt, compensating)
                    break
                previous = error
                if observation is not None:
                    observation.retrying(name, attempt, error, compensating=compensating)
                await self._pause(retry, attempt - spent + 1, plan, compensating)
                if not compensating and self._past_deadline(plan, starting=False):
                    late = self._deadline_error(name, interrupted=False)
                    outcome = self._give_up(plan, late, attempt, doubt, compensating)
                    break
            else:
                outcome = (
                    self._undone(plan, attempt)
                    if compensating
                    else self._accept(plan, value, attempt)
                )
                if ctx.emitted and outcome is _SUCCESS:
                    state.outbox += ctx.emitted  # committed with the call's success
                break
        pending = recorder.after_outcome(state)
        if pending is not None:
            await pending
        return outcome

    def _accept(self, plan: StepPlan, value: Any, attempt: int) -> Outcome:
        """Take an action's return value: keep it, or reject what is not a mapping."""
        if value is None:
            value = {}
        elif type(value) is not dict and not isinstance(value, Mapping):
            # It ran, so it may have had an effect: compensate it, never retry it.
            bad = InvalidResultError(self.state.saga_id, plan.name, value)
            self.fire(plan.t_invalid_result, attempt, bad)
            return IN_DOUBT, bad
        try:
            result = self.recorder.result(value)
        except StoreError as error:
            self.fire(plan.t_invalid_result, attempt, error)
            return IN_DOUBT, error
        self.state.results[plan.name] = result  # kept before dependants start
        self.fire(plan.t_succeed, attempt)
        self.state.completed.append(plan.name)
        return _SUCCESS

    def _undone(self, plan: StepPlan, attempt: int) -> Outcome:
        """A compensation finished."""
        self.fire(plan.t_compensation_done, attempt)
        self.state.compensated.append(plan.name)
        self._proceed()
        return _SUCCESS

    def _give_up(
        self, plan: StepPlan, error: BaseException, attempt: int, doubt: bool, compensating: bool
    ) -> Outcome:
        """A call's last attempt failed: after a timeout an action's outcome is unknown."""
        if compensating:
            self.fire(plan.t_compensation_fail, attempt, error)
            self._proceed()
            return COMPENSATION_FAILED, error
        if doubt or _interrupted(error):
            self.fire(plan.t_time_out, attempt, error)
            return IN_DOUBT, error
        self.fire(plan.t_fail, attempt, error)
        return FAILED, error

    def _proceed(self) -> None:
        # A reopened chain returns to "compensating" after each compensation: the ones it
        # retries need not be neighbours in the chain.
        if self.state.reopening and self.c.sequential:
            self.fire(_PROCEED)

    async def _pause(self, retry: Retry, attempt: int, plan: StepPlan, compensating: bool) -> None:
        delay = retry.delay_before(attempt, self.clock.random())
        if not compensating and self._deadline_binds(plan):
            assert self.state.deadline_at is not None
            delay = max(0.0, min(delay, self.state.deadline_at - self.now()))  # not past it
        await self.clock.sleep(delay)

    def _call(self, fn: Action, ctx: Context, plan: StepPlan, compensation: bool) -> Awaitable[Any]:
        """``fn(ctx)``, to await, limited by the step's timeout or the saga's deadline."""
        if FAULTS.get():
            fault = injected(plan.name, compensation)
            if fault is not None:
                raise fault
        timeout = plan.timeout
        cut = False  # whether the saga's deadline, not the step's timeout, sets the limit
        # The pivot itself is never cut short: its outcome must not become unknown.
        if (
            self.state.deadline_at is not None
            and not compensation
            and not plan.pivot
            and (self._deadline_binds(plan))
        ):
            assert self.state.deadline_at is not None
            left = max(0.0, self.state.deadline_at - self.now())
            if timeout is None or left < timeout:
                timeout, cut = left, True
        if timeout is None:
            return fn(ctx)  # type: ignore[no-any-return]
        return self._limited(fn, ctx, plan, timeout, cut)

    async def _limited(
        self, fn: Action, ctx: Context, plan: StepPlan, seconds: float, cut: bool
    ) -> Any:
        scope = asyncio.timeout(seconds)
        try:
            async with scope:
                return await fn(ctx)
        except TimeoutError:
            if not scope.expired():
                raise
            if cut:
                raise self._deadline_error(plan.name, interrupted=True) from None
            raise StepTimeoutError(self.state.saga_id, plan.name, seconds) from None

    # -- the saga's deadline ----------------------------------------------------------------

    def _deadline_binds(self, plan: StepPlan) -> bool:
        """Whether the saga's deadline still limits ``plan``: only before the pivot succeeds,
        and never a step a person pushed forward (asking for it is a decision to go on)."""
        state = self.state
        return (
            state.deadline_at is not None
            and not state.pivoted
            and not plan.after_pivot
            and plan.name not in state.pushing
        )

    def _past_deadline(self, plan: StepPlan, *, starting: bool = True) -> bool:
        """Whether the deadline keeps ``plan`` from another attempt.

        ``starting``: the step has not started yet, and the run now fails (between attempts
        the caller gives the step up instead).
        """
        state = self.state
        if not self._deadline_binds(plan):
            return False
        assert state.deadline_at is not None
        if self.now() < state.deadline_at:
            return False
        if starting and plan.name in state.resumed:
            # Its process died while it ran: it is not called again, so its effect is unknown.
            state.resumed.pop(plan.name)
            cut = self._deadline_error(plan.name, interrupted=True)
            self.fire(plan.t_time_out, 0, cut)
            state.settle(plan, IN_DOUBT, cut)
        elif starting and not state.failing:
            state.failing = True
            if state.error is None:
                state.error = self._deadline_error(None, interrupted=False)
        return True

    def _deadline_error(self, step: str | None, *, interrupted: bool) -> SagaDeadlineError:
        return SagaDeadlineError(
            self.state.saga_id, step, self.c.deadline or 0.0, interrupted=interrupted
        )


def _interrupted(error: BaseException) -> bool:
    """Whether ``error`` cut an attempt short, leaving its effect unknown."""
    return isinstance(error, StepTimeoutError | OutcomeUnknownError) or (
        isinstance(error, SagaDeadlineError) and error.interrupted
    )


def _raise_if_cancelled(error: BaseException) -> None:
    """Re-raise a cancellation aimed at this task; one an action raised on its own is a failure."""
    if isinstance(error, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is None or task.cancelling():
            raise error
