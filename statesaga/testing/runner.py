"""``explore`` and ``scenarios``: the saga's failure space, generated from its compiled
machine, run against the user's own actions and services, and checked."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from ..compiler import CompiledSaga, compile_saga
from ..definition import SagaDefinition
from ..durable.drive import drive_stored, finished_result, start
from ..durable.resources import StoreLike, open_store
from ..durable.waiting import signal
from ..errors import RunWaiting, SignalArrived, SignalRefused
from ..ids import new_run_id
from ..result import SagaResult
from ..store.base import RunSnapshot, SagaStore
from ..store.memory import MemoryStore
from ..vocabulary import Phase, step_state
from .checks import problems
from .inject import CrashingStore, Runtime, SimulatedCrash, derive
from .kit import FakeClock
from .plan import Expected, Kind, Plan, as_run, describe_outcome, plans

__all__ = ["Outcome", "Report", "Scenario", "explore", "scenarios"]

Setup = Callable[[], Any]
Check = Callable[[SagaResult, "Scenario"], Any]


async def _maybe_await(value: Any) -> None:
    if inspect.isawaitable(value):
        await value


@attrs.frozen
class Outcome:
    """How one scenario went.

    Attributes:
        name: The scenario's name (also its ``str``).
        kind: ``"fault"`` or ``"crash"``.
        expected: What the machine predicts, in words.
        observed: What the run did, in words.
        ok: Whether everything held.
        error: What did not hold (``None`` when all did): a prediction missed, a promise of
            the engine broken, or the error ``check`` raised.
        result: The run's result (``None`` if it did not end).
    """

    name: str
    kind: Kind
    expected: str
    observed: str
    ok: bool
    error: str | None = None
    result: SagaResult | None = attrs.field(default=None, repr=False)
    replay: str = attrs.field(default="", repr=False)

    def __str__(self) -> str:
        return self.name

    def explain(self) -> str:
        """The scenario, what was predicted and observed, what failed, and how to replay it."""
        mark = "ok" if self.ok else "FAILED"
        lines = [f"{mark}: {self.name}", f"  expected: {self.expected}"]
        lines.append(f"  observed: {self.observed}")
        if self.error:
            lines += [f"  {line}" for line in self.error.splitlines()]
            if self.replay:
                lines += ["  replay it with:", *(f"    {x}" for x in self.replay.splitlines())]
        return "\n".join(lines)


@attrs.frozen(eq=False)
class Scenario:
    """One generated scenario of a saga, to run on its own (``pytest.mark.parametrize``).

    Attributes:
        name: Its name (also its ``str``): the fault or crash in words, then the prediction.
        kind: ``"fault"`` or ``"crash"``.
        expected: What the machine predicts.
        plan: The scenario as data (its faults and crash point).
    """

    saga: type[SagaDefinition] = attrs.field(repr=False)
    plan: Plan = attrs.field(repr=False)
    store: StoreLike | None = attrs.field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def kind(self) -> Kind:
        return self.plan.kind

    @property
    def expected(self) -> Expected:
        return self.plan.expected

    def __str__(self) -> str:
        return self.plan.name

    async def run(
        self,
        data: Mapping[str, Any] | None = None,
        setup: Setup | None = None,
        check: Check | None = None,
    ) -> Outcome:
        """Run it: ``setup()``, the saga under the scenario's fault (and crash, then a
        resume), the checks, then ``check(result, scenario)``. Never raises for what went
        wrong in the saga: the outcome says."""
        compiled = compile_saga(self.saga)
        if setup is not None:
            await _maybe_await(setup())
        runtime = Runtime(self.plan, compiled.task_name)
        replay = _replay(self, data or {})
        try:
            result, stored, at_crash = await _drive(
                compiled, self.saga, dict(data or {}), runtime, self.store
            )
        except (Exception, SimulatedCrash) as error:
            observed = f"did not end: {type(error).__name__}: {error}"
            return Outcome(self.name, self.kind, str(self.expected), observed, False, observed)
        observed = describe_outcome(
            result.status, result.compensated_steps, sorted(result.compensation_errors)
        )
        plan = as_run(compiled, self.plan, result.skipped_steps)
        expected = str(plan.expected)
        if plan is not self.plan:
            expected += f" ({', '.join(result.skipped_steps)} skipped for this data)"
        found = problems(compiled, plan, result, runtime, stored, at_crash)
        if not found and check is not None:
            try:
                await _maybe_await(check(result, self))
            except Exception as error:  # the user's check failed: that is the finding
                text = str(error) or repr(error)
                found.append(f"check failed: {type(error).__name__}: {text}")
        return Outcome(
            self.name,
            self.kind,
            expected,
            observed,
            not found,
            "\n".join(found) or None,
            result,
            replay,
        )


def _replay(scenario: Scenario, data: Mapping[str, Any]) -> str:
    saga = scenario.saga
    return (
        f"from {saga.__module__} import {saga.__qualname__.split('.')[0]}\n"
        "from statesaga.testing import scenarios\n"
        f"[s] = [s for s in scenarios({saga.__qualname__}) if s.name == {scenario.name!r}]\n"
        f"outcome = await s.run(data={dict(data)!r}, setup=..., check=...)\n"
        "print(outcome.explain())"
    )


async def _drive(
    compiled: CompiledSaga,
    saga: type[SagaDefinition],
    data: dict[str, Any],
    runtime: Runtime,
    store: StoreLike | None,
) -> tuple[SagaResult, RunSnapshot | None, RunSnapshot | None]:
    """Run the scenario to its end: crash where it says, then resume as a worker would."""
    derived = derive(saga, compiled, runtime)
    plan = compile_saga(derived)
    inner: SagaStore = MemoryStore() if store is None else await open_store(store)
    wrapped: Any = CrashingStore(inner, runtime)
    clock = FakeClock()
    run_id = new_run_id()
    at_crash: RunSnapshot | None = None

    def again() -> Awaitable[SagaResult | None]:
        # As a worker resumes it: a run that ended meanwhile is reported, not tried again.
        return drive_stored(
            wrapped,
            run_id,
            saga=derived,
            allow_changed_definition=False,
            clock=clock,
            abandon_on_cancel=True,
        )

    try:
        first = start(plan, data, run_id, clock, wrapped, abandon_on_cancel=True)
        result = await _through_waits(first, again, inner, run_id, plan, runtime, clock)
    except BaseException:
        if not runtime.crashed:
            raise
        # The process died: whatever its other tasks raised on their way out is moot.
        for _ in range(8):
            await asyncio.sleep(0)
        for task in runtime.dying:  # the crash was handled: no "never retrieved" warning
            if task.done() and not task.cancelled():
                task.exception()
        at_crash = await inner.load(run_id)
        runtime.life = 1
        result = await _through_waits(again(), again, inner, run_id, plan, runtime, clock)
    stored = await inner.load(run_id)
    return result, stored, at_crash


async def _through_waits(
    first: Awaitable[SagaResult | None],
    again: Callable[[], Awaitable[SagaResult | None]],
    store: SagaStore,
    run_id: str,
    plan: CompiledSaga,
    runtime: Runtime,
    clock: FakeClock,
) -> SagaResult:
    """Drive the run to its end; each time it parks, answer its waits as the scenario says
    (a signal, or the clock moved past the timeout) and drive it again."""
    drive = first
    for _ in range(2 * len(plan.steps) + 2):  # each round settles at least one wait
        try:
            result = await drive
        except (RunWaiting, SignalArrived):
            await _answer_waits(store, run_id, plan, runtime, clock)
            drive = again()
            continue
        return result or finished_result(await store.load(run_id))
    raise RuntimeError(f"run {run_id} kept waiting after its waits were answered")


async def _answer_waits(
    store: SagaStore, run_id: str, plan: CompiledSaga, runtime: Runtime, clock: FakeClock
) -> None:
    """Signal the waits the scenario signals; for the ones left silent, let time pass."""
    record = (await store.load(run_id)).run
    silent = False
    for step in plan.steps:
        waiting = step_state(step.name, Phase.WAITING)
        if not step.wait or record.config.get(plan.region_of_state[waiting]) != waiting:
            continue
        if step.name in runtime.plan.unsignalled:
            silent = True
            continue
        with contextlib.suppress(SignalRefused):  # signalled before
            await signal(store, run_id, step.name, {}, saga=plan.saga)
    if silent and record.wake_at is not None:
        clock.now = max(clock.now, record.wake_at)


@attrs.frozen
class Report:
    """What ``explore`` found.

    Attributes:
        saga: The saga's name.
        scenarios: Each scenario's ``Outcome``, in the order run.
    """

    saga: str
    scenarios: tuple[Outcome, ...]

    @property
    def ok(self) -> bool:
        """Whether every scenario held."""
        return all(s.ok for s in self.scenarios)

    @property
    def failures(self) -> tuple[Outcome, ...]:
        return tuple(s for s in self.scenarios if not s.ok)

    def summary(self) -> str:
        """A count of what held, then each failing scenario explained."""
        failed = self.failures
        total = len(self.scenarios)
        crash = sum(s.kind == "crash" for s in self.scenarios)
        head = (
            f"{self.saga}: {total - len(failed)} of {total} scenarios hold "
            f"({total - crash} faults, {crash} crash points)"
        )
        return "\n".join([head, *(s.explain() for s in failed)])


def scenarios(
    saga: type[SagaDefinition],
    *,
    crashes: bool = True,
    pairs: bool = False,
    store: StoreLike | None = None,
) -> list[Scenario]:
    """The scenarios ``explore`` runs, each to run on its own.

    Args:
        saga: The saga class.
        crashes: Add the crash points (the process dies before and after each commit).
        pairs: Add two faults at once.
        store: Where the runs are stored (a store or its URL); a fresh in-memory store per
            scenario by default.
    """
    compiled = compile_saga(saga)
    return [Scenario(saga, p, store) for p in plans(compiled, crashes=crashes, pairs=pairs)]


async def explore(
    saga: type[SagaDefinition],
    data: Mapping[str, Any] | None = None,
    *,
    setup: Setup | None = None,
    check: Check | None = None,
    crashes: bool = True,
    pairs: bool = False,
    store: StoreLike | None = None,
    on_outcome: Callable[[Outcome], Awaitable[None] | None] | None = None,
) -> Report:
    """Run every scenario of ``saga``'s failure space against its real actions and check each.

    Args:
        saga: The saga class.
        data: The input of every run.
        setup: Called (plain or async) before each scenario: reset your fake services.
        check: Called as ``check(result, scenario)`` (plain or async) after each; raising
            (a plain ``assert``) fails the scenario.
        crashes: Include the crash points.
        pairs: Include two faults at once.
        store: Where the runs are stored; a fresh in-memory store per scenario by default.
        on_outcome: Called with each outcome as it is known (the CLI prints them).

    Returns:
        The ``Report``: ``ok``, ``summary()`` and each scenario's ``Outcome``.
    """
    found = []
    for scenario in scenarios(saga, crashes=crashes, pairs=pairs, store=store):
        outcome = await scenario.run(data, setup, check)
        found.append(outcome)
        if on_outcome is not None:
            await _maybe_await(on_outcome(outcome))
    return Report(compile_saga(saga).name, tuple(found))
