"""How a scenario's faults and crash reach a run without touching the engine: a derived saga
whose actions wrap the user's, and a store wrapper that dies at a commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from ..compiler import CompiledSaga, StepPlan
from ..context import Context
from ..definition import Action, Retry, SagaDefinition, Step
from ..errors import NonRetryableError, OutcomeUnknownError, StepTimeoutError
from ..store.base import Commit, SagaStore
from .plan import (
    FAILS,
    FAILS_AMID,
    FAILS_ONCE,
    NON_MAPPING,
    NON_RETRYABLE,
    REPLY_LOST,
    TIMES_OUT,
    Fault,
    Plan,
)


class SimulatedCrash(BaseException):
    """The process died here (simulated): the run is abandoned where it stands.

    A ``BaseException``, like the ``SystemExit`` of a killed process, so no ``except
    Exception`` in the engine or in user code takes it for a failure of the step.
    """


class InjectedError(Exception):
    """What a scenario's fault raises from an action or compensation (retryable)."""


class InjectedNonRetryable(NonRetryableError):
    """What a scenario's non-retryable fault raises."""


#: ``InjectedError`` combined with each exception type a step retries on, made once.
_COMBINED: dict[type[BaseException], type[InjectedError] | None] = {}


def _injected_as(kind: type[BaseException]) -> type[InjectedError] | None:
    """An ``InjectedError`` that is also a ``kind`` (``None`` if the two cannot combine)."""
    if kind not in _COMBINED:
        try:
            _COMBINED[kind] = type(f"Injected{kind.__name__}", (InjectedError, kind), {})
        except TypeError:
            _COMBINED[kind] = None
    return _COMBINED[kind]


def retryable(retry: Retry, where: str) -> InjectedError:
    """A retryable fault's error, of a type ``retry`` retries: a step with
    ``retry_on=ConnectionError`` gets an ``InjectedError`` that is a ``ConnectionError``."""
    if issubclass(InjectedError, retry.retry_on):
        return InjectedError(where)
    for kind in retry.retry_on:
        combined = _injected_as(kind)
        if combined is not None:
            with contextlib.suppress(TypeError):  # a constructor that wants other arguments
                return combined(where)
    return InjectedError(where)  # the prediction (a retry) will say what went wrong


@attrs.define
class Call:
    """One call of an action (``back``: a compensation) as the wrappers saw it.

    ``life`` is 0 for the first process, 1 after the crash and resume. ``ok``: it returned
    a value the engine accepts (a mapping or ``None``).
    """

    step: str
    back: bool
    key: str
    attempt: int
    life: int
    ok: bool = False


@attrs.define
class Runtime:
    """One scenario's run: its faults, its crash point, and the ledger of every call."""

    plan: Plan
    task_name: str = ""
    ledger: list[Call] = attrs.Factory(list)
    life: int = 0
    armed: bool = False
    crashed: bool = False
    crash_call: Call | None = None
    #: The tasks the crash was raised in: their exception is retrieved once it is handled.
    dying: list[asyncio.Task[Any]] = attrs.Factory(list)
    _seen: dict[tuple[str, bool], int] = attrs.Factory(dict)
    #: Called at the crash point instead of raising (a real process kills itself there).
    on_death: Callable[[], None] | None = None
    #: For ``FAILS_AMID``: the held steps that started, and whether the failure was raised.
    _held: set[str] = attrs.Factory(set)
    _amid_failed: asyncio.Event = attrs.Factory(asyncio.Event)

    def carry_on(self, ledger: Sequence[Call], crash_call: int | None) -> None:
        """Take over from a process that died (``crash_call``: its crash call's index in
        ``ledger``, ``None`` if it never crashed): its calls count, as faults that strike
        once have struck."""
        self.ledger = list(ledger)
        for call in ledger:
            self._seen[call.step, call.back] = self._seen.get((call.step, call.back), 0) + 1
            fault = self.fault(call.step, call.back)
            if fault is not None and fault.kind == FAILS_AMID:
                self._amid_failed.set()
        if crash_call is not None:
            self.crashed = True
            self.crash_call = ledger[crash_call]
        self.life = 1

    def fault(self, step: str, back: bool) -> Fault | None:
        for fault in self.plan.faults:
            if fault.step == step and fault.back == back:
                return fault
        return None

    def returned(self, call: Call) -> None:
        """A call is over: if it is the crash point's call, the next commit is fatal."""
        crash = self.plan.crash
        if crash is None or self.crashed or self.crash_call is not None:
            return
        if (call.step, call.back) == (crash.step, crash.back):
            self.armed = True
            self.crash_call = call

    async def perform(
        self, fn: Action, ctx: Context, call: Call, limit: float | None, retry: Retry
    ) -> Any:
        """Run the user's ``fn`` as the scenario's fault says."""
        fault = self.fault(call.step, call.back)
        kind = fault.kind if fault is not None else None
        where = f"injected by scenario: {call.step}{' compensation' if call.back else ''}"
        count = self._seen.get((call.step, call.back), 0)
        self._seen[(call.step, call.back)] = count + 1
        await self._amid(call, kind)
        if (kind == FAILS_ONCE and count == 0) or kind == FAILS:
            raise retryable(retry, where)
        if kind in (NON_RETRYABLE, FAILS_AMID):
            raise InjectedNonRetryable(where)
        if kind == TIMES_OUT:
            raise StepTimeoutError(ctx.saga_id, call.step, limit or 0.0)
        value = await fn(ctx)
        if kind == NON_MAPPING:
            return 42
        if kind == REPLY_LOST and count == 0:
            raise OutcomeUnknownError(f"{where}: the effect happened, the reply was lost")
        return value

    async def _amid(self, call: Call, kind: str | None) -> None:
        """Hold the steps beside a ``FAILS_AMID`` step running until it fails; make it wait
        (a bounded number of turns of the loop) until they all started."""
        amid = next((f for f in self.plan.faults if f.kind == FAILS_AMID), None)
        if amid is None or call.back:
            return
        if kind == FAILS_AMID:
            for _ in range(1000):
                if self._held >= set(amid.amid):
                    break
                await asyncio.sleep(0)
            self._amid_failed.set()
        elif call.step in amid.amid and not self._amid_failed.is_set():
            self._held.add(call.step)
            await self._amid_failed.wait()


#: The scenario being run in this context (the run's tasks inherit it).
_CURRENT: contextvars.ContextVar[Runtime] = contextvars.ContextVar("statesaga_scenario")

#: Each saga's derived class: one per saga, so its machine is compiled once.
_DERIVED: weakref.WeakKeyDictionary[type[SagaDefinition], type[SagaDefinition]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.contextmanager
def running(runtime: Runtime) -> Iterator[None]:
    """Within this block the derived sagas' calls go through ``runtime``."""
    token = _CURRENT.set(runtime)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _wrap(fn: Action, step: str, back: bool, plan: StepPlan) -> Action:
    retry = plan.compensate_retry if back else plan.retry

    async def call(ctx: Context) -> Any:
        runtime = _CURRENT.get()
        entry = Call(step, back, ctx.idempotency_key, ctx.attempt, runtime.life)
        runtime.ledger.append(entry)
        try:
            value = await runtime.perform(fn, ctx, entry, plan.timeout, retry)
        finally:
            runtime.returned(entry)
        entry.ok = value is None or isinstance(value, Mapping)
        return value

    call.__name__ = getattr(fn, "__name__", step)
    call.__qualname__ = getattr(fn, "__qualname__", step)
    return call


def derive(saga: type[SagaDefinition], compiled: CompiledSaga) -> type[SagaDefinition]:
    """A saga of the same name, steps and shape as ``saga`` (so the same machine and
    fingerprint) whose actions and compensations are the user's, wrapped with the faults of
    the scenario ``running`` names and recorded in its ledger."""
    derived = _DERIVED.get(saga)
    if derived is None:
        derived = _DERIVED[saga] = _derived(saga, compiled)
    return derived


def _derived(saga: type[SagaDefinition], compiled: CompiledSaga) -> type[SagaDefinition]:
    steps: list[Step] = []
    for step in saga.steps:
        if step.action is None:  # a wait
            steps.append(step)
            continue
        plan = compiled.by_name[step.name]
        undo = step.compensate
        steps.append(
            attrs.evolve(
                step,
                action=_wrap(step.action, step.name, False, plan),
                compensate=None if undo is None else _wrap(undo, step.name, True, plan),
            )
        )
    namespace = {
        "steps": tuple(steps),
        "name": saga.name,
        "__module__": saga.__module__,
        "__qualname__": saga.__qualname__,
        "__doc__": saga.__doc__,
    }
    return type(saga.__name__, (saga,), namespace)


class CrashingStore:
    """A store that dies (``SimulatedCrash``) at the commit after the scenario's crash call
    returned: before handing it over, or once it is done. Everything else is the wrapped
    store's."""

    def __init__(self, inner: SagaStore, runtime: Runtime) -> None:
        self.inner = inner
        self.runtime = runtime

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self, commit: Commit) -> Awaitable[Sequence[str] | None]:
        runtime = self.runtime
        if runtime.crashed and runtime.life == 0:
            return self._dead()  # the process is gone: its other tasks write nothing more
        if not runtime.armed:
            return self.inner.commit(commit)
        runtime.armed = False
        return self._die(commit)

    async def release(self, run_id: str, owner: str) -> None:
        if self.runtime.crashed and self.runtime.life == 0:
            await self._dead()  # a dead process releases no lease
        await self.inner.release(run_id, owner)

    async def _dead(self) -> None:
        raise SimulatedCrash("the process is gone")

    async def _die(self, commit: Commit) -> Sequence[str] | None:
        crash = self.runtime.plan.crash
        assert crash is not None
        if crash.after:
            await self.inner.commit(commit)
        if self.runtime.on_death is not None:
            self.runtime.on_death()
        self.runtime.crashed = True
        # The tasks the crash will end: the one raising it, and the run's own task (a DAG's
        # steps run in tasks of their own, the run's task awaits them).
        current = asyncio.current_task()
        name = self.runtime.task_name
        self.runtime.dying += [
            t for t in asyncio.all_tasks() if t is current or t.get_name() == name
        ]
        raise SimulatedCrash(crash.describe())

    async def __aenter__(self) -> CrashingStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None
