"""``explore`` and ``scenarios``: the saga's failure space, generated from its compiled
machine, run against the user's own actions and services, and checked."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

import attrs

from ..compiler import compile_saga
from ..definition import SagaDefinition
from ..durable.resources import StoreLike
from ..result import SagaResult
from .checks import problems
from .driving import drive
from .inject import Runtime, SimulatedCrash, running
from .plan import Expected, Kind, Plan, as_run, describe_outcome, plans
from .process import drive_in_a_process, needs_sqlite, reference_of

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
            run_error = None if self.result is None else self.result.error
            if run_error is not None:  # what stopped the run, when it was not the fault
                lines.append(f"  the run's error: {type(run_error).__name__}: {run_error}")
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
    #: Its crash is a real process killed (``crashes="process"``), made with ``pairs``.
    process: bool = attrs.field(default=False, repr=False)
    pairs: bool = attrs.field(default=False, repr=False)

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
        replay = _replay(self, data or {}, setup, check)
        try:
            with running(runtime):
                if self.process and self.plan.crash is not None:
                    result, stored, at_crash = await drive_in_a_process(
                        self.saga, compiled, dict(data or {}), runtime, self.store, self.pairs
                    )
                else:
                    result, stored, at_crash = await drive(
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


def _replay(
    scenario: Scenario, data: Mapping[str, Any], setup: Setup | None, check: Check | None
) -> str:
    """A program that runs this scenario again, as it was run."""
    saga = scenario.saga
    imports = [f"from {saga.__module__} import {saga.__qualname__.split('.')[0]}"]
    given = []
    for option, fn in (("setup", setup), ("check", check)):
        name = getattr(fn, "__qualname__", "")
        if fn is not None and name and "<" not in name:  # a module's function, not a lambda
            imports.append(f"from {fn.__module__} import {name.split('.')[0]}")
            given.append(f", {option}={name}")
    options = [f"crashes={'process' if scenario.process else True!r}"]
    if scenario.pairs:
        options.append("pairs=True")
    return "\n".join(
        [
            "import asyncio",
            *imports,
            "from statesaga.testing import scenarios",
            f"[s] = [s for s in scenarios({saga.__qualname__}, {', '.join(options)})"
            f" if s.name == {scenario.name!r}]",
            f"outcome = asyncio.run(s.run(data={dict(data)!r}{''.join(given)}))",
            "print(outcome.explain())",
        ]
    )


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
    crashes: bool | Literal["process"] = True,
    pairs: bool = False,
    store: StoreLike | None = None,
) -> list[Scenario]:
    """The scenarios ``explore`` runs, each to run on its own.

    Args:
        saga: The saga class.
        crashes: Add the crash points (the process dies before and after each commit):
            simulated in this process, or with ``"process"`` a real process killed there
            (on SQLite; the saga must be importable, and ``check`` sees only services
            outside the process, such as files or databases).
        pairs: Add two faults at once.
        store: Where the runs are stored (a store or its URL); a fresh in-memory store per
            scenario by default (a fresh SQLite file for a killed process).
    """
    compiled = compile_saga(saga)
    process = crashes == "process"
    if process:
        needs_sqlite(store)
        reference_of(saga)
    return [
        Scenario(saga, p, store, process, pairs)
        for p in plans(compiled, crashes=bool(crashes), pairs=pairs)
    ]


async def explore(
    saga: type[SagaDefinition],
    data: Mapping[str, Any] | None = None,
    *,
    setup: Setup | None = None,
    check: Check | None = None,
    crashes: bool | Literal["process"] = True,
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
        crashes: Include the crash points (``"process"``: kill a real process there).
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
