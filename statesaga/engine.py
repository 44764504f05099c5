"""Drive one run through its compiled machine: retries, timeouts, compensation, cancellation."""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from collections.abc import Awaitable, Coroutine, Mapping
from types import MappingProxyType
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
)
from .journal import Journal
from .messaging.message import Message
from .observe.registry import RunObservation, begin
from .result import RawEntry, SagaResult, SagaStatus, unfold
from .store.base import StoreError
from .vocabulary import SAGA_REGION, Phase, SagaState, SagaTrigger, saga_status

# The vocabulary this module compares and fires, as plain str globals: a fired name goes into
# the run's history (a name, not an enum member), and a global costs a fraction of an enum
# member's lookup on a path every run and step takes.
# A step's outcome (its phase); a run rebuilt from a store may also hold "running" and the
# compensation phases.
_SUCCEEDED: Final = Phase.SUCCEEDED.value
_FAILED: Final = Phase.FAILED.value
_IN_DOUBT: Final = Phase.IN_DOUBT.value
_RUNNING: Final = Phase.RUNNING.value
_COMPENSATING: Final = Phase.COMPENSATING.value
_COMPENSATION_FAILED: Final = Phase.COMPENSATION_FAILED.value
_PENDING: Final = Phase.PENDING.value  # a DAG's step that has not started
# The saga's status.
_SAGA_RUNNING: Final = SagaState.RUNNING.value
_SAGA_COMPENSATING: Final = SagaState.COMPENSATING.value
_SAGA_FAILED: Final = SagaState.FAILED.value
# The saga's triggers.
_START: Final = SagaTrigger.START.value
_COMPLETE: Final = SagaTrigger.COMPLETE.value
_ABORT: Final = SagaTrigger.ABORT.value
_HALT: Final = SagaTrigger.HALT.value
_FINISH: Final = SagaTrigger.FINISH.value
_GIVE_UP: Final = SagaTrigger.GIVE_UP.value
_REOPEN: Final = SagaTrigger.REOPEN.value
_PROCEED: Final = SagaTrigger.PROCEED.value
_PUSH_FORWARD: Final = SagaTrigger.PUSH_FORWARD.value

_Outcome = tuple[str, BaseException | None]
_T = TypeVar("_T")
_SUCCESS: _Outcome = (_SUCCEEDED, None)
_NOT_STARTED: _Outcome = (_PENDING, None)
_NO_ERRORS: Mapping[str, BaseException] = MappingProxyType({})


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


async def drive_to_result(run: _Run, *, abandon_on_cancel: bool = False) -> SagaResult:
    """Drive ``run`` in a task of its own and return its result (see ``statesaga.saga.start_run``).

    With ``abandon_on_cancel`` a cancellation abandons the run at once instead of winding it
    down: for durable runs driven by a worker, which another worker can take over later.
    """
    loop = asyncio.get_running_loop()
    task = start_task(run.drive(), loop, run.c.task_name)
    if task.done():  # it ran to its end without waiting (an eager start)
        return _outcome(task)
    return await _wait_for(run, task, loop, abandon_on_cancel)


async def run_in_memory(
    compiled: CompiledSaga, data: Mapping[str, Any], saga_id: str, clock: Clock
) -> SagaResult:
    """``drive_to_result`` of a new in-memory run, made only once it is awaited.

    (Made when the run is asked for, many runs gathered at once would all hold their state
    before the first one starts.)
    """
    run = _Run(compiled, data, saga_id, clock, lean=True)
    loop = asyncio.get_running_loop()
    task = start_task(run.drive(), loop, run.c.task_name)
    if task.done():
        return _outcome(task)
    return await _wait_for(run, task, loop, False)


def _outcome(task: asyncio.Task[SagaResult | None]) -> SagaResult:
    result = task.result()
    assert result is not None  # with no waiter, drive() raises instead of returning None
    return result


async def _wait_for(
    run: _Run, task: asyncio.Task[SagaResult | None], loop: asyncio.AbstractEventLoop, abandon: bool
) -> SagaResult:
    """Wait for a run that is waiting on something (cancellation: ``saga.start_run``)."""
    # The run lives in its own task so that a cancellation of the caller reaches it as a
    # request instead of cancelling a step whose effect would then be unknown. The caller
    # waits on a plain future that the task fills in: cancelling that future leaves the task
    # alone. (A Task subclass intercepting cancel() would be cheaper, but would also swallow
    # the cancellations asyncio.timeout() makes inside users' actions.)
    run.waiter = loop.create_future()
    try:
        return await run.waiter
    except asyncio.CancelledError:
        if task.done():
            raise
        if abandon:
            task.cancel()
            raise
        run.cancel_requested = True
        run.waiter = loop.create_future()
        try:
            await run.waiter
        except asyncio.CancelledError:
            task.cancel()  # a second cancellation: abandon the run at once
        raise  # the caller's cancellation, now that the run has wound down


class _Run:
    """The mutable state of one run; nothing in it is shared with another run."""

    __slots__ = (
        "c",
        "cancel_requested",
        "clock",
        "compensated",
        "compensation_errors",
        "completed",
        "config",
        "data",
        "deadline_at",
        "error",
        "failed_step",
        "failing",
        "halting",
        "history",
        "journal",
        "lean",
        "now",
        "observation",
        "outbox",
        "outcomes",
        "pivoted",
        "pushing",
        "reopening",
        "results",
        "results_view",
        "resumed",
        "saga_id",
        "stamps",
        "waiter",
    )

    def __init__(
        self,
        compiled: CompiledSaga,
        data: Mapping[str, Any],
        saga_id: str,
        clock: Clock,
        *,
        lean: bool = False,
    ):
        self.c = compiled
        self.data = data
        self.saga_id = saga_id
        self.clock = clock
        self.now = clock.time
        self.config: dict[str, str] = {SAGA_REGION: compiled.initial}
        if not compiled.sequential:
            self.config.update((p.name, p.state(_PENDING)) for p in compiled.steps)
        self.results: dict[str, Mapping[str, Any]] = {}
        self.results_view = MappingProxyType(self.results)
        self.cancel_requested = False
        self.waiter: asyncio.Future[SagaResult] | None = None
        self.journal: Journal | None = None
        self.observation: RunObservation | None = None
        self.outbox: list[Message] = []  # what succeeded calls emitted, in commit order
        # When the saga's deadline passes (run clock time); set when the run starts, or from
        # the stored start time when a run is resumed.
        self.deadline_at: float | None = None
        # The times of the transitions the fast path took without recording them (see
        # drive); None once they are recorded, or when the run never took it.
        self.stamps: list[float] | None = None
        # A lean run (a new in-memory one) holds only what the fast path uses until it
        # leaves it (prepare); a run that fails or compensates needs the rest.
        self.lean = lean
        if not lean:
            self.prepare()

    def prepare(self) -> None:
        """Make the state a run off the fast path keeps (once)."""
        self.lean = False
        self.history: list[RawEntry] = []
        self.outcomes: dict[str, str] = {}
        self.completed: list[str] = []
        self.compensated: list[str] = []
        self.compensation_errors: dict[str, BaseException] = {}
        self.failed_step: str | None = None
        self.error: BaseException | None = None
        self.failing = False
        self.halting = False
        self.pivoted = False
        # Steps a resumed run must call again, with the attempt number to continue from.
        self.resumed: dict[str, int] = {}
        self.reopening = False  # a failed run whose failed compensations are retried
        # Steps that halted a failed run, to run again (a person asked): whether each was in
        # doubt.
        self.pushing: dict[str, bool] = {}

    # -- the machine ------------------------------------------------------------------------

    def fire(self, trigger: str, attempt: int = 0, error: BaseException | None = None) -> None:
        """Take ``trigger``'s edge from the current state of its region, or fail loudly."""
        region = self.c.region_of_trigger.get(trigger, "")
        source = self.config.get(region, "")
        dest = self.c.table.get((source, trigger))
        if dest is None:
            raise MachineError(
                f"saga {self.c.name} run {self.saga_id}: no transition {trigger!r} from "
                f"{source!r}; this is a bug in statesaga, please report it"
            )
        self.config[region] = dest
        self.history.append((trigger, source, dest, self.now(), attempt, error))
        if self.observation is not None:
            self.observation.transition(trigger, attempt, error)

    def unfold(self, *, running: bool) -> None:
        """Record the transitions the fast path only stamped (see ``drive``): the run's state
        becomes what taking them one by one would have made it. ``running``: the step after
        the last stamped success had started."""
        stamps, self.stamps = self.stamps, None
        assert stamps is not None
        self.prepare()
        succeeded = len(stamps) - 1
        self.history += unfold(self.c.happy_edges, stamps, 1 + 2 * succeeded + running)
        self.config[SAGA_REGION] = self.c.happy_edges[2 * succeeded + running][2]
        names = self.c.step_names[:succeeded]
        self.completed += names
        self.outcomes.update(dict.fromkeys(names, _SUCCEEDED))
        self.pivoted = any(plan.pivot for plan in self.c.steps[:succeeded])

    # -- the run ----------------------------------------------------------------------------

    async def drive(self) -> SagaResult | None:
        """Drive the run to its end; hand the outcome to ``self.waiter`` if one is waiting."""
        c = self.c
        try:
            started = self.clock.monotonic()
            state = self.config[SAGA_REGION]
            status = state if state == c.initial else saga_status(state)
            self.observation = begin(c.name, self.saga_id, self.clock, self)
            if self.lean and (
                self.observation is not None
                or not c.sequential
                or c.deadline is not None
                or FAULTS.get()
            ):
                self.prepare()  # it cannot take the fast path
            if self.observation is not None:
                self.observation.started(resumed=status != c.initial)
            if c.deadline is not None and self.deadline_at is None:
                self.deadline_at = self.now() + c.deadline
            done = 0  # steps of a chain the fast path finished with
            if status == c.initial:
                if self.lean:
                    # The fast path: a new in-memory chain with nothing to observe,
                    # time-limit or inject. Its first attempts take the edges the compiler
                    # looked up once (CompiledSaga.happy_edges), so only their times are
                    # kept: the start's, then one per step, as a step's success and the next
                    # one's start happen together. They are recorded (unfold) as soon as
                    # anything else happens: the first step that needs more (a timeout, a
                    # failure) leaves the fast path for _chain. No frame, table lookup or
                    # history entry per step.
                    now = self.now
                    stamps = self.stamps = [now()]
                    stamp, stored = stamps.append, self.results
                    data, results, saga_id = self.data, self.results_view, self.saga_id
                    for plan, name, plain in c.happy_path:
                        if self.cancel_requested or not plain:
                            done = len(stamps) - 1
                            self.unfold(running=False)
                            break
                        ctx = Context(data, results, saga_id, name, 1)
                        try:
                            value = await plan.action(ctx)
                        except (Exception, asyncio.CancelledError) as error:
                            _raise_if_cancelled(error)
                            done = len(stamps)
                            self.unfold(running=True)
                            if plan.retry.should_retry(error, 1):
                                await self._pause(plan.retry, 2)
                                self._record(plan, await self._attempts(plan, 2, error))
                            else:
                                self._record(plan, self._give_up(plan, error, 1, False))
                            break
                        if value is None:
                            value = {}
                        elif type(value) is not dict and not isinstance(value, Mapping):
                            done = len(stamps)
                            self.unfold(running=True)
                            self._record(plan, self._accept(plan, value, 1))
                            break
                        stored[name] = value
                        if ctx.emitted:
                            self.outbox += ctx.emitted
                        stamp(now())
                    else:
                        # Every step succeeded: the run completes without having recorded a
                        # transition; its history is unfolded if someone reads it.
                        self.stamps = None
                        self.config[SAGA_REGION] = c.happy_end
                        result = SagaResult(
                            SagaStatus.COMPLETED,
                            saga_id,
                            c.step_names,
                            (),
                            None,
                            None,
                            _NO_ERRORS,
                            stored,
                            self.clock.monotonic() - started,
                            stamps,
                            tuple(self.outbox) if self.outbox else (),
                            path=c.happy_edges,
                        )
                        if self.waiter is not None and not self.waiter.done():
                            self.waiter.set_result(result)
                        return result
                else:
                    self.fire(_START)
                status = _SAGA_RUNNING
            elif status == _SAGA_FAILED and self.reopening:
                self.fire(_REOPEN)  # retry the compensations that failed
                status = _SAGA_COMPENSATING
            elif status == _SAGA_FAILED and self.pushing:
                # A person asked for another try of the steps that halted it past the pivot.
                if not c.sequential:
                    self.fire(_PUSH_FORWARD)
                for name in self.pushing:
                    self.fire(c.by_name[name].t_push_forward)
                status = _SAGA_RUNNING
            if status == _SAGA_RUNNING and not self.failing:
                if c.sequential:
                    await self._chain(done)
                else:
                    await self._forward()
            if status != _SAGA_RUNNING:
                ending = None
            elif self.halting:
                ending = SagaStatus.FAILED
                self.fire(_HALT)
            elif len(self.completed) == len(c.steps):
                ending = SagaStatus.COMPLETED
                self.fire(_COMPLETE)
            elif self.pivoted:
                # Cancelled past the point of no return: nothing may be compensated, so the
                # run stays unfinished (a durable one can be resumed forward).
                if self.journal is not None:
                    await self.journal.flush(self)
                raise asyncio.CancelledError
            else:
                ending = None
                self.fire(_ABORT)
            if ending is None:
                await self._compensate_all()
                if self.compensation_errors:
                    ending = SagaStatus.FAILED
                    self.fire(_GIVE_UP)
                else:
                    ending = SagaStatus.COMPENSATED
                    self.fire(_FINISH)
            result = self.result_of(ending, self.clock.monotonic() - started)
            if self.journal is not None:
                await self.journal.flush(self)
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

    def result_of(self, status: SagaStatus, duration: float) -> SagaResult:
        """The run's result, ended in ``status`` after ``duration`` seconds."""
        # Positional, in SagaResult's field order: this runs once per run, on the hot path.
        return SagaResult(
            status,
            self.saga_id,
            tuple(self.completed),
            tuple(self.compensated) if self.compensated else (),
            self.failed_step,
            self.error,
            self.compensation_errors,
            self.results,
            duration,
            self.history,
            tuple(self.outbox) if self.outbox else (),
        )

    # -- forward ----------------------------------------------------------------------------

    async def _chain(self, first: int = 0) -> None:
        """Run a chain's steps one after another from ``first`` (those before it are done)."""
        for plan in self.c.steps[first:]:
            if self.failing or self.halting or self.cancel_requested:
                return
            if plan.name in self.outcomes:
                continue  # a resumed run: this step already succeeded
            if self.deadline_at is not None and self._past_deadline(plan):
                return
            self._record(plan, await self._attempts(plan))

    async def _forward(self) -> None:
        """Run a DAG: each step as soon as its own dependencies have succeeded."""
        steps = self.c.steps
        ok = {name for name, status in self.outcomes.items() if status == _SUCCEEDED}
        waiting = {p.name: sum(d not in ok for d in p.deps) for p in steps if p.name not in ok}
        ready = deque(p for p in steps if p.name in waiting and not waiting[p.name])
        running: set[asyncio.Task[_Outcome]] = set()
        plan_of: dict[asyncio.Task[_Outcome], StepPlan] = {}
        try:
            while True:
                if ready and self.deadline_at is not None:
                    for p in list(ready):
                        self._past_deadline(p)  # once passed, the run fails
                if ready and (self.failing or self.halting or self.cancel_requested):
                    # No new step starts; a resumed run still finishes the steps that were
                    # running when its process died (past a pivot they must go forward).
                    owed = [p for p in ready if p.name in self.resumed]
                    ready.clear()
                    ready.extend(owed)
                if ready:
                    if len(ready) == 1 and not running:
                        # Nothing else can become ready meanwhile: run it inline, no task.
                        plan = ready.popleft()
                        self._settle(plan, await self._attempts(plan), waiting, ready)
                        continue
                    loop = asyncio.get_running_loop()
                    while ready:
                        plan = ready.popleft()
                        task = loop.create_task(self._attempts(plan))
                        running.add(task)
                        plan_of[task] = plan
                if not running:
                    return
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: plan_of[t].index):
                    running.discard(task)
                    self._settle(plan_of.pop(task), task.result(), waiting, ready)
        finally:
            for task in running:  # only when abandoning the run
                task.cancel()

    def _settle(
        self, plan: StepPlan, outcome: _Outcome, waiting: dict[str, int], ready: deque[StepPlan]
    ) -> None:
        if self._record(plan, outcome):
            for name in plan.dependants:
                waiting[name] -= 1
                if not waiting[name]:
                    ready.append(self.c.by_name[name])

    def _record(self, plan: StepPlan, outcome: _Outcome) -> bool:
        """Note a step's outcome; whether it succeeded."""
        status, error = outcome
        if outcome is _NOT_STARTED:
            return False
        self.outcomes[plan.name] = status
        if status == _SUCCEEDED:
            if plan.pivot:
                self.pivoted = True
            return True
        if self.failed_step is None:
            self.failed_step, self.error = plan.name, error
        if plan.after_pivot or (plan.pivot and status == _IN_DOUBT):
            self.halting = True
        else:
            self.failing = True
        return False

    async def _attempts(
        self, plan: StepPlan, first: int = 1, previous: BaseException | None = None
    ) -> _Outcome:
        """Call a step's action until it succeeds or its retries run out.

        ``first`` and ``previous`` continue a run of attempts begun elsewhere.
        """
        if first == 1:
            if plan.name in self.resumed:
                first = self.resumed.pop(plan.name)  # it was running when its process died
            elif self.failing or self.halting or self.cancel_requested:
                return _NOT_STARTED  # a sibling launched in the same batch has already failed
        retry = plan.retry
        # Once an attempt timed out, its effect may exist even if later attempts raise.
        doubt = previous is not None and _interrupted(previous)
        # A step pushed forward by a person continues its attempt numbers but gets its whole
        # retry budget again; if it was in doubt, it stays so until it succeeds.
        pushed = self.pushing.get(plan.name)
        spent = first - 1 if pushed is not None else 0
        doubt = doubt or bool(pushed)
        attempt = first - 1
        while True:
            attempt += 1
            self.fire(plan.t_start if attempt == 1 else plan.t_retry, attempt, previous)
            ctx = Context(self.data, self.results_view, self.saga_id, plan.name, attempt)
            if self.journal is not None:
                await self.journal.flush(self)  # write-ahead: recorded as running first
            try:
                value = await self._call(plan.action, ctx, plan, False)
            except (Exception, asyncio.CancelledError) as error:
                _raise_if_cancelled(error)
                doubt = doubt or _interrupted(error)
                if isinstance(error, SagaDeadlineError) or not retry.should_retry(
                    error, attempt - spent
                ):
                    outcome = self._give_up(plan, error, attempt, doubt)
                    break
                previous = error
                if self.observation is not None:
                    self.observation.retrying(plan.name, attempt, error, compensating=False)
                await self._pause(retry, attempt - spent + 1, plan)
                if self._past_deadline(plan, starting=False):
                    late = self._deadline_error(plan.name, interrupted=False)
                    outcome = self._give_up(plan, late, attempt, doubt)
                    break
            else:
                outcome = self._accept(plan, value, attempt)
                if ctx.emitted and outcome is _SUCCESS:
                    self.outbox += ctx.emitted  # committed with the step's success
                break
        if self.journal is not None and not self.c.sequential:
            # In a DAG a step's outcome is committed at once: siblings may run on for long.
            # (In a chain the next flush follows at once.)
            await self.journal.flush(self)
        return outcome

    def _accept(self, plan: StepPlan, value: object, attempt: int) -> _Outcome:
        """Take an action's return value: store it, or reject a non-mapping."""
        if value is None:
            value = {}
        elif type(value) is not dict and not isinstance(value, Mapping):
            # It ran, so it may have had an effect: compensate it, never retry it.
            bad = InvalidResultError(self.saga_id, plan.name, value)
            self.fire(plan.t_invalid_result, attempt, bad)
            return _IN_DOUBT, bad
        result: Mapping[str, Any] = value
        if self.journal is not None:
            try:
                result = self.journal.stored_result(result)
            except StoreError as error:
                self.fire(plan.t_invalid_result, attempt, error)
                return _IN_DOUBT, error
        self.results[plan.name] = result  # stored before dependants start
        self.fire(plan.t_succeed, attempt)
        self.completed.append(plan.name)
        return _SUCCESS

    def _give_up(self, plan: StepPlan, error: BaseException, attempt: int, doubt: bool) -> _Outcome:
        """A step's last attempt failed: after a timeout its outcome is unknown."""
        if doubt or _interrupted(error):
            self.fire(plan.t_time_out, attempt, error)
            return _IN_DOUBT, error
        self.fire(plan.t_fail, attempt, error)
        return _FAILED, error

    async def _pause(self, retry: Retry, attempt: int, plan: StepPlan | None = None) -> None:
        delay = retry.delay_before(attempt, self.clock.random())
        if plan is not None and self._deadline_binds(plan):
            assert self.deadline_at is not None
            delay = max(0.0, min(delay, self.deadline_at - self.now()))  # no sleeping past it
        await self.clock.sleep(delay)

    def _deadline_binds(self, plan: StepPlan) -> bool:
        """Whether the saga's deadline still limits ``plan``: only before the pivot succeeds,
        and never a step a person pushed forward (asking for it is a decision to go on)."""
        return (
            self.deadline_at is not None
            and not self.pivoted
            and not plan.after_pivot
            and plan.name not in self.pushing
        )

    def _past_deadline(self, plan: StepPlan, *, starting: bool = True) -> bool:
        """Whether the deadline keeps ``plan`` from another attempt.

        ``starting``: the step has not started yet, and the run now fails (between attempts
        the caller gives the step up instead).
        """
        if not self._deadline_binds(plan):
            return False
        assert self.deadline_at is not None
        if self.now() < self.deadline_at:
            return False
        if starting and plan.name in self.resumed:
            # Its process died while it ran: it is not called again, so its effect is unknown.
            self.resumed.pop(plan.name)
            cut = self._deadline_error(plan.name, interrupted=True)
            self.fire(plan.t_time_out, 0, cut)
            self._record(plan, (_IN_DOUBT, cut))
        elif starting and not self.failing:
            self.failing = True
            if self.error is None:
                self.error = self._deadline_error(None, interrupted=False)
        return True

    def _deadline_error(self, step: str | None, *, interrupted: bool) -> SagaDeadlineError:
        return SagaDeadlineError(
            self.saga_id, step, self.c.deadline or 0.0, interrupted=interrupted
        )

    def _call(self, fn: Action, ctx: Context, plan: StepPlan, compensation: bool) -> Awaitable[Any]:
        """``fn(ctx)``, to await, limited by the step's timeout or the saga's deadline.

        A plain function: a call with no limit is the action's own coroutine, nothing around
        it (every attempt of every step comes through here).
        """
        if FAULTS.get():
            fault = injected(plan.name, compensation)
            if fault is not None:
                raise fault
        timeout = plan.timeout
        cut = False  # whether the saga's deadline, not the step's timeout, sets the limit
        # The pivot itself is never cut short: its outcome must not become unknown.
        if not compensation and not plan.pivot and self._deadline_binds(plan):
            assert self.deadline_at is not None
            left = max(0.0, self.deadline_at - self.now())
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
            raise StepTimeoutError(self.saga_id, plan.name, seconds) from None

    # -- compensation -----------------------------------------------------------------------

    async def _compensate_all(self) -> None:
        """Compensate every step that took effect, each after the steps that depend on it."""
        for plan in self.c.steps:
            if self.outcomes.get(plan.name) == _RUNNING:  # its process died while it ran
                self.fire(plan.t_interrupt)
                self.outcomes[plan.name] = _IN_DOUBT
        owed: tuple[str, ...] = (_SUCCEEDED, _IN_DOUBT, _COMPENSATING)
        if self.reopening:
            owed += (_COMPENSATION_FAILED,)
        targets = [
            p
            for p in self.c.steps
            if p.compensate is not None and self.outcomes.get(p.name) in owed
        ]
        if self.c.sequential:
            # In a chain every step depends on the one before: compensations run one after
            # another, last step first.
            for plan in reversed(targets):
                error = await self._compensate(plan)
                if error is not None:
                    self.compensation_errors[plan.name] = error
            return
        names = {p.name for p in targets}
        waiting = dict.fromkeys(names, 0)
        for p in targets:
            for name in p.ancestors & names:
                waiting[name] += 1
        ready = deque(p for p in reversed(targets) if not waiting[p.name])
        running: dict[asyncio.Task[BaseException | None], StepPlan] = {}
        try:
            while ready or running:
                if len(ready) == 1 and not running:
                    plan = ready.popleft()
                    self._settle_compensation(plan, await self._compensate(plan), waiting, ready)
                    continue
                loop = asyncio.get_running_loop()
                while ready:
                    plan = ready.popleft()
                    running[loop.create_task(self._compensate(plan))] = plan
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: -running[t].index):
                    self._settle_compensation(running.pop(task), task.result(), waiting, ready)
        finally:
            for task in running:
                task.cancel()

    def _settle_compensation(
        self,
        plan: StepPlan,
        error: BaseException | None,
        waiting: dict[str, int],
        ready: deque[StepPlan],
    ) -> None:
        if error is not None:
            self.compensation_errors[plan.name] = error
        for name in sorted(plan.ancestors & waiting.keys(), key=lambda n: -self.c.by_name[n].index):
            waiting[name] -= 1
            if not waiting[name]:
                ready.append(self.c.by_name[name])

    async def _compensate(self, plan: StepPlan) -> BaseException | None:
        compensate = plan.compensate
        assert compensate is not None
        retry = plan.compensate_retry
        previous: BaseException | None = None
        # A resumed run continues a compensation its process started.
        attempt = self.resumed.pop(plan.name, 1) - 1
        while True:
            attempt += 1
            trigger = plan.t_compensate if attempt == 1 else plan.t_retry_compensation
            self.fire(trigger, attempt, previous)
            ctx = Context(self.data, self.results_view, self.saga_id, plan.name, attempt, True)
            if self.journal is not None:
                await self.journal.flush(self)
            try:
                await self._call(compensate, ctx, plan, True)
            except (Exception, asyncio.CancelledError) as error:
                _raise_if_cancelled(error)
                if retry.should_retry(error, attempt):
                    previous = error
                    if self.observation is not None:
                        self.observation.retrying(plan.name, attempt, error, compensating=True)
                    await self._pause(retry, attempt + 1)
                    continue
                self.fire(plan.t_compensation_fail, attempt, error)
                self._proceed()
                return error
            self.fire(plan.t_compensation_done, attempt)
            if ctx.emitted:
                self.outbox += ctx.emitted
            self.compensated.append(plan.name)
            self._proceed()
            return None

    def _proceed(self) -> None:
        # A reopened chain returns to "compensating" after each compensation: the ones it
        # retries need not be neighbours in the chain.
        if self.reopening and self.c.sequential:
            self.fire(_PROCEED)


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
