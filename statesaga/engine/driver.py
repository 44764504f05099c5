"""The driver of one run: it fires the run's transitions and walks its steps."""

from __future__ import annotations

import asyncio
import enum
import math
from collections import deque
from collections.abc import Coroutine
from typing import Any, Final

from ..clock import Clock
from ..compiler import StepPlan
from ..errors import MachineError, RunPaused, RunWaiting
from ..observe.registry import RunObservation, begin
from ..result import SagaResult, SagaStatus
from ..vocabulary import (
    COMPENSATING,
    COMPENSATION_FAILED,
    FAILED,
    IN_DOUBT,
    RUNNING,
    SAGA_REGION,
    SKIPPED,
    SUCCEEDED,
    SagaTrigger,
    saga_status,
)
from . import deadline
from .calls import NOT_STARTED, Outcome, attempts
from .conditions import guarded
from .recorder import Recorder
from .state import RunState
from .waits import PARKED, due, is_waiting, wait_for

# The saga's own triggers as they are recorded: plain strings.
_ABORT: Final = SagaTrigger.ABORT.value
_COMPLETE: Final = SagaTrigger.COMPLETE.value
_FINISH: Final = SagaTrigger.FINISH.value
_GIVE_UP: Final = SagaTrigger.GIVE_UP.value
_HALT: Final = SagaTrigger.HALT.value
_PUSH_FORWARD: Final = SagaTrigger.PUSH_FORWARD.value
_REOPEN: Final = SagaTrigger.REOPEN.value
_START: Final = SagaTrigger.START.value


class _End(enum.Enum):
    UNFINISHED = "unfinished"  # how a run cancelled past its pivot ends: it does not


_UNFINISHED: Final = _End.UNFINISHED
_NOWHERE: Final[tuple[str, dict[str, str]]] = ("", {})  # an unknown trigger leads nowhere


class Driver:
    """Drives one run: fires its transitions, calls its steps, tells its recorder."""

    __slots__ = (
        "c",
        "cancel_requested",
        "clock",
        "held_back",
        "now",
        "observation",
        "parked",
        "pause",
        "recorder",
        "state",
        "waiter",
        "wakers",
    )

    def __init__(self, state: RunState, clock: Clock, recorder: Recorder) -> None:
        self.state = state
        self.c = state.compiled
        self.clock = clock
        self.now = clock.time
        self.recorder = recorder
        self.observation: RunObservation | None = None
        self.cancel_requested = False
        # Set (by a worker draining): start no new step or compensation; once the running
        # ones have settled, commit and stop with ``RunPaused``. ``held_back``: it kept one.
        self.pause: asyncio.Event | None = None
        self.held_back = False
        self.waiter: asyncio.Future[SagaResult] | None = None
        self.parked: list[StepPlan] = []  # a recorded run's waits that have no signal yet
        self.wakers: dict[str, asyncio.Future[None]] = {}  # an in-memory run's waits

    # -- waits -------------------------------------------------------------------------------

    async def sleep_until_signal(self, event: str, when: float) -> None:
        """Sleep until ``wake`` is called for ``event`` (or for every wait), or until ``when``
        (run-clock time) has passed."""
        loop = asyncio.get_running_loop()
        waker = self.wakers[event] = loop.create_future()
        try:
            if when == math.inf:
                await waker
                return
            sleeper = loop.create_task(self.clock.sleep(max(0.0, when - self.now())))
            try:
                await asyncio.wait((waker, sleeper), return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
        finally:
            if self.wakers.get(event) is waker:
                del self.wakers[event]

    def wake(self, event: str | None = None) -> None:
        """Wake the wait for ``event`` (``None``: every wait) to look at the run again."""
        for name, waker in list(self.wakers.items()):
            if (event is None or name == event) and not waker.done():
                waker.set_result(None)

    def fire(self, trigger: str, attempt: int = 0, error: BaseException | None = None) -> None:
        """Take ``trigger``'s edge from the current state of its region, or fail loudly."""
        state = self.state
        config = state.config
        region, dests = self.c.moves.get(trigger, _NOWHERE)
        source = config.get(region, "")
        dest = dests.get(source)
        if dest is None:
            raise MachineError(
                f"saga {self.c.name} run {state.saga_id}: no transition {trigger!r} from "
                f"{source!r}; this is a bug in statesaga, please report it"
            )
        config[region] = dest
        state.history.append((trigger, source, dest, self.now(), attempt, error))
        if self.observation is not None:
            self.observation.transition(trigger, attempt, error)

    # -- the run ----------------------------------------------------------------------------

    async def drive(self) -> SagaResult | None:
        """Drive the run to its end; hand the outcome to ``self.waiter`` if one is waiting."""
        c, state, recorder = self.c, self.state, self.recorder
        try:
            started = self.clock.monotonic()
            status = state.config[SAGA_REGION]
            if status != c.initial:
                status = saga_status(status)
            self.observation = observation = begin(c.name, state.saga_id, self.clock, state)
            if observation is not None:
                observation.started(resumed=status != c.initial)
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
                await self.walk(*self.ahead(), False)
                if self.held_back:
                    await self._paused()
                if self.parked:
                    await self._park()
            ending = self._ending(status)
            if ending is _UNFINISHED:
                # Cancelled past the point of no return: nothing may be compensated, so the
                # run stays unfinished (a durable one can be resumed forward).
                pending = recorder.at_end(state)
                if pending is not None:
                    await pending
                raise asyncio.CancelledError
            if ending is None:
                await self.walk(*self.owed(), True)
                if self.held_back:
                    await self._paused()
                if state.compensation_errors:
                    ending = SagaStatus.FAILED
                    self.fire(_GIVE_UP)
                else:
                    ending = SagaStatus.COMPENSATED
                    self.fire(_FINISH)
            result = self.result(ending, state.earlier + self.clock.monotonic() - started)
            pending = recorder.at_end(state)
            if pending is not None:
                await pending
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

    async def _paused(self) -> None:
        """Steps were held back by ``pause``: commit what settled and stop, unfinished."""
        self.parked = []  # waits not committed as waiting: the next driver parks them again
        pending = self.recorder.at_end(self.state)
        if pending is not None:
            await pending
        raise RunPaused(self.state.saga_id)

    async def _park(self) -> None:
        """The forward walk ended with waits that have no signal: if the run still goes
        forward it is recorded as waiting and stops here (``RunWaiting``); otherwise they are
        given up."""
        state, parked = self.state, self.parked
        self.parked = []
        if not (state.failing or state.halting or self.cancel_requested):
            wake = min(due(self, plan) for plan in parked)
            wake_at = None if wake == math.inf else wake
            events = [plan.name for plan in parked]
            await self.recorder.park(state, events, wake_at)
            raise RunWaiting(state.saga_id, events, wake_at)
        for plan in parked:
            await wait_for(self, plan)  # it takes t_fail at once
            state.outcomes[plan.name] = FAILED

    def _ending(self, status: str) -> SagaStatus | _End | None:
        """How a run that went forward ends: a status, ``None`` when it goes back
        (compensates), or ``_UNFINISHED`` when it was cancelled past its pivot."""
        state = self.state
        if status != RUNNING:
            return None
        if state.halting:
            self.fire(_HALT)
            return SagaStatus.FAILED
        if len(state.completed) + len(state.skipped) == len(self.c.steps):
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
            skipped_steps=tuple(state.skipped),
            failed_step=state.failed_step,
            error=state.error,
            compensation_errors=state.compensation_errors,
            results=state.results,
            duration=duration,
            raw_history=state.history,
            messages=tuple(state.outbox),
        )

    # -- the walk ---------------------------------------------------------------------------

    def ahead(self) -> tuple[deque[StepPlan], dict[str, int]]:
        """The steps to run going forward: those ready now, and how many steps each of the
        others waits for (a step runs once the steps it depends on have succeeded)."""
        steps, done = self.c.steps, self.state.outcomes
        if done:
            ok = {name for name, phase in done.items() if phase in (SUCCEEDED, SKIPPED)}
            waiting = {p.name: sum(d not in ok for d in p.deps) for p in steps if p.name not in ok}
        else:
            waiting = {p.name: len(p.deps) for p in steps}
        return deque(p for p in steps if waiting.get(p.name) == 0), waiting

    def owed(self) -> tuple[deque[StepPlan], dict[str, int]]:
        """The compensations to run going back: every step that took effect, each after the
        steps that depend on it (those ready now, and how many each other one waits for)."""
        state, steps = self.state, self.c.steps
        for plan in steps:
            if state.outcomes.get(plan.name) == RUNNING:  # its process died while it ran
                self.fire(plan.t_interrupt)
                state.outcomes[plan.name] = IN_DOUBT
            elif plan.wait and is_waiting(self, plan):  # given up: the run goes back
                self.fire(plan.t_fail, 0, state.error)
                state.outcomes[plan.name] = FAILED
        owed: tuple[str, ...] = (SUCCEEDED, IN_DOUBT, COMPENSATING)
        if state.reopening:
            owed += (COMPENSATION_FAILED,)
        targets = [
            p for p in steps if p.compensate is not None and state.outcomes.get(p.name) in owed
        ]
        waiting = {p.name: 0 for p in targets}
        for p in targets:
            for name in p.ancestors:
                if name in waiting:
                    waiting[name] += 1
        return deque(p for p in reversed(targets) if not waiting[p.name]), waiting

    async def walk(self, ready: deque[StepPlan], waiting: dict[str, int], back: bool) -> None:
        """Call the ``ready`` steps (``back``: their compensations), and each step of
        ``waiting`` once the steps it waits for have settled, concurrently where the machine
        allows: going forward a step waits for its dependencies, going back for the steps
        that depend on it."""
        state = self.state
        running: dict[asyncio.Task[Outcome], StepPlan] = {}
        try:
            while True:
                if ready and self.pause is not None and self.pause.is_set():
                    self.held_back = True  # the run stops once the running steps settle
                    ready.clear()
                if (
                    ready
                    and not back
                    and (
                        state.deadline_at is not None
                        or state.failing
                        or state.halting
                        or self.cancel_requested
                    )
                ):
                    self._gate(ready)
                if not running and len(ready) == 1:
                    # Nothing else can become ready meanwhile: call it inline, no task.
                    plan = ready.popleft()
                    self._settled(plan, await self._call(plan, back), back, waiting, ready)
                    continue
                if ready:
                    loop = asyncio.get_running_loop()
                    while ready:
                        plan = ready.popleft()
                        running[loop.create_task(self._call(plan, back))] = plan
                if not running:
                    return
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                # Outcomes that arrive together are taken in step order (reversed going back).
                for task in sorted(done, key=lambda t: running[t].index, reverse=back):
                    plan = running.pop(task)
                    self._settled(plan, task.result(), back, waiting, ready)
        finally:
            for task in running:  # only when abandoning the run
                task.cancel()

    def _call(self, plan: StepPlan, back: bool) -> Coroutine[Any, Any, Outcome]:
        if (
            plan.when is not None
            and not back
            and plan.name not in self.state.resumed
            and not (plan.wait and is_waiting(self, plan))
        ):
            return guarded(self, plan)
        return wait_for(self, plan) if plan.wait else attempts(self, plan, back)

    def _settled(
        self,
        plan: StepPlan,
        outcome: Outcome,
        back: bool,
        waiting: dict[str, int],
        ready: deque[StepPlan],
    ) -> None:
        """Note a call's outcome and make ready the steps that waited only for it."""
        state = self.state
        if back:
            if outcome[1] is not None:
                state.compensation_errors[plan.name] = outcome[1]
            # Its dependencies are compensated after it, latest first, failed or not.
            names = plan.ancestors
        elif outcome is NOT_STARTED:
            return
        elif outcome is PARKED:
            self.parked.append(plan)
            return
        elif not state.settle(plan, outcome[0], outcome[1]):
            self.wake()  # waits stop waiting: the run goes no further forward
            return
        else:
            names = plan.dependants
        for name in names:
            count = waiting.get(name)
            if count is not None:
                waiting[name] = count - 1
                if count == 1:
                    ready.append(self.c.by_name[name])

    def _gate(self, ready: deque[StepPlan]) -> None:
        """Before steps start: the saga's deadline, and whether the run still goes forward."""
        state = self.state
        if state.deadline_at is not None:
            for plan in list(ready):
                deadline.past(self, plan)  # once passed, the run fails
        if state.failing or state.halting or self.cancel_requested:
            # No new step starts; a resumed run still finishes the steps that were running
            # when its process died (past a pivot they must go forward).
            # A wait that was waiting is given up (its t_fail) rather than left waiting.
            owed = [p for p in ready if p.name in state.resumed or (p.wait and is_waiting(self, p))]
            ready.clear()
            ready.extend(owed)
