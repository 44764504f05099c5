"""The failure space of a saga, read off its compiled machine: the faults and crash points
``explore`` tries, and what the machine predicts for each.

Pure: nothing here runs a saga.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Final, Literal

import attrs

from ..compiler import CompiledSaga, StepPlan
from ..definition import ON_TIMEOUT
from ..errors import OutcomeUnknownError
from ..result import SagaStatus

# What a fault does to a call. Action faults:
FAILS_ONCE: Final = "fails_once"  # raises once, then the real function runs
FAILS: Final = "fails_every_time"  # raises on every attempt (retryable)
NON_RETRYABLE: Final = "non_retryable"  # raises NonRetryableError
TIMES_OUT: Final = "times_out"  # every attempt is cut short by its timeout
NON_MAPPING: Final = "non_mapping"  # the real function runs, then 42 is returned
REPLY_LOST: Final = "reply_lost"  # the real function runs, then OutcomeUnknownError (once)
FAILS_AMID: Final = "fails_amid_siblings"  # fails (non-retryable) while its siblings run
# Wait faults:
SIGNAL_ARRIVES: Final = "signal_arrives"
WAIT_TIMES_OUT: Final = "wait_times_out"

#: Faults that strike only the first call.
_ONCE: Final = frozenset({FAILS_ONCE, REPLY_LOST})

#: Faults after which the step's effect may exist: it is compensated.
_DOUBT: Final = frozenset({TIMES_OUT, NON_MAPPING})

Kind = Literal["fault", "crash"]


@attrs.frozen
class Fault:
    """One fault: what happens to one call (a step's action, or with ``back`` its
    compensation)."""

    step: str
    kind: str
    back: bool = False
    #: With ``FAILS_AMID``: the steps of a DAG held running until this one has failed.
    amid: tuple[str, ...] = ()

    def ends_step(self, plan: StepPlan) -> bool:
        """Whether the step's action finally fails (or ends in doubt) under this fault."""
        if self.back or self.kind in (FAILS_ONCE, SIGNAL_ARRIVES):
            return False
        if self.kind == REPLY_LOST:  # lost once: a retry recovers, if the step retries it
            return not plan.retry.should_retry(OutcomeUnknownError(plan.name), 1)
        if self.kind == WAIT_TIMES_OUT:
            return plan.on_timeout == ON_TIMEOUT[0]
        return True

    def in_doubt(self, plan: StepPlan) -> bool:
        """Whether the step's effect may exist once the fault ended it."""
        return self.kind in _DOUBT or (self.kind == REPLY_LOST and self.ends_step(plan))

    def describe(self, plan: StepPlan) -> str:
        """The fault in words, as scenario names show it."""
        where = f"{plan.name} compensation" if self.back else plan.name
        if plan.when is not None:
            where += " (if it runs)"
        attempts = (plan.compensate_retry if self.back else plan.retry).attempts
        what = {
            FAILS_ONCE: "fails once, then succeeds",
            FAILS: f"exhausts {attempts} attempts" if attempts > 1 else "fails",
            NON_RETRYABLE: "fails (non-retryable)",
            TIMES_OUT: f"times out ({plan.timeout:g} s)" if plan.timeout else "times out",
            NON_MAPPING: "returns a non-mapping",
            REPLY_LOST: "reply lost after its effect (OutcomeUnknownError)",
            FAILS_AMID: f"fails while {', '.join(self.amid)} "
            + ("is running" if len(self.amid) == 1 else "are running"),
            SIGNAL_ARRIVES: "signal arrives",
            WAIT_TIMES_OUT: f"wait times out ({plan.timeout:g} s)" if plan.timeout else "",
        }[self.kind]
        return f"{where}: {what}"


@attrs.frozen
class Crash:
    """Where the process dies: at the first commit after ``step``'s call (its compensation
    with ``back``) returned, just before handing it over, or with ``after`` once it is done."""

    step: str
    back: bool
    after: bool

    @property
    def call(self) -> str:
        return f"{self.step} compensation" if self.back else self.step

    def describe(self) -> str:
        if self.after:
            return f"crash after {self.call}'s outcome was committed"
        return f"crash after {self.call} returned, before its outcome was committed"


@attrs.frozen
class Expected:
    """What the machine predicts for a scenario.

    Attributes:
        status: How the run ends.
        failed_step: The step whose failure stops it, if any.
        compensated: Steps compensated for sure, in the order predicted (reverse dependency).
        maybe: Steps of a DAG that ran beside the failure and may have finished before it
            was seen: compensated if they succeeded.
        gave_up: Steps whose compensation is predicted to give up.
    """

    status: SagaStatus
    failed_step: str | None = None
    compensated: tuple[str, ...] = ()
    maybe: tuple[str, ...] = ()
    gave_up: tuple[str, ...] = ()

    def __str__(self) -> str:
        return describe_outcome(self.status, self.compensated, self.gave_up, self.maybe)


def describe_outcome(
    status: str,
    compensated: Sequence[str],
    gave_up: Sequence[str] = (),
    maybe: Sequence[str] = (),
) -> str:
    """An outcome in words: ``completed``, ``compensated: b, a``, ``failed; ...``."""
    text = str(status)
    done = ", ".join(compensated) or "nothing"
    if status != SagaStatus.COMPLETED:
        text += f"; compensated: {done}" if status == SagaStatus.FAILED else f": {done}"
    if maybe:
        text += f" (maybe also: {', '.join(maybe)})"
    if gave_up:
        text += f"; compensation gave up: {', '.join(gave_up)}"
    return text


@attrs.frozen
class Plan:
    """One scenario as data: its faults, its crash point, and the machine's prediction."""

    name: str
    kind: Kind
    faults: tuple[Fault, ...]
    crash: Crash | None
    expected: Expected
    #: Waits left without their signal (their timeout fires).
    unsignalled: tuple[str, ...] = ()


def _eligible(plan: StepPlan) -> bool:
    """Steps a fault is injected into: conditional steps may not run at all."""
    return plan.when is None


def predict(
    compiled: CompiledSaga, faults: Sequence[Fault], skipped: Sequence[str] = ()
) -> Expected:
    """What the machine does under ``faults`` (at most one of which ends its step), when the
    ``skipped`` steps' conditions are false (their faults never strike)."""
    faults = [f for f in faults if f.step not in skipped]
    ending = [f for f in faults if f.ends_step(compiled.by_name[f.step])]
    if not ending:
        return Expected(SagaStatus.COMPLETED)
    fault = ending[0]
    plan = compiled.by_name[fault.step]
    doubt = fault.in_doubt(plan)
    if plan.after_pivot or (plan.pivot and doubt):
        return Expected(SagaStatus.FAILED, plan.name)  # halts: nothing is compensated
    position = {p.name: p.index for p in compiled.steps}

    def undoable(names: Sequence[str]) -> tuple[str, ...]:
        kept = [n for n in names if compiled.by_name[n].compensate is not None]
        return tuple(sorted(kept, key=position.__getitem__, reverse=True))

    # Steps running beside the failure finish (nothing cancels an effect) and are undone.
    must = undoable([*plan.ancestors, *fault.amid, *([plan.name] if doubt else [])])
    maybe: tuple[str, ...] = ()
    if not compiled.sequential:
        related = {plan.name, *plan.ancestors, *fault.amid}
        held = {plan.name, *fault.amid}  # what depends on these cannot start before
        later = {p.name for p in compiled.steps if held & set(p.ancestors)}
        maybe = undoable([p.name for p in compiled.steps if p.name not in related | later])
    exhausted = {f.step for f in faults if f.back and f.kind == FAILS}
    gave_up = tuple(n for n in must if n in exhausted)
    status = SagaStatus.FAILED if gave_up else SagaStatus.COMPENSATED
    return Expected(
        status,
        plan.name,
        tuple(n for n in must if n not in exhausted),
        maybe,
        gave_up,
    )


def single_faults(compiled: CompiledSaga) -> Iterator[tuple[Fault, ...]]:
    """Each fault alone; a compensation's faults come with the failure that makes it run."""
    for plan in compiled.steps:  # a conditional step's faults strike only if it runs
        if plan.wait:
            yield (Fault(plan.name, SIGNAL_ARRIVES),)
            if plan.timeout is not None:  # the scenario's clock moves past it at once
                yield (Fault(plan.name, WAIT_TIMES_OUT),)
            continue
        attempts = plan.retry.attempts
        if attempts >= 2:
            yield (Fault(plan.name, FAILS_ONCE),)
        yield (Fault(plan.name, NON_RETRYABLE),)
        if attempts >= 2:
            yield (Fault(plan.name, FAILS),)
        if plan.timeout is not None:
            yield (Fault(plan.name, TIMES_OUT),)
        yield (Fault(plan.name, NON_MAPPING),)
        yield (Fault(plan.name, REPLY_LOST),)
        beside = concurrent_with(compiled, plan)
        if beside:
            yield (Fault(plan.name, FAILS_AMID, amid=beside),)
    for plan in compiled.steps:
        if plan.compensate is None:
            continue
        trigger = _trigger_for(compiled, plan)
        if trigger is None:
            continue
        if plan.compensate_retry.attempts >= 2:
            yield (Fault(plan.name, FAILS_ONCE, back=True), trigger)
        yield (Fault(plan.name, FAILS, back=True), trigger)


def concurrent_with(compiled: CompiledSaga, plan: StepPlan) -> tuple[str, ...]:
    """The steps of a DAG that may be running when ``plan`` fails: neither before nor after
    it, and ready once its own dependencies are (empty when a pivot is involved: past it,
    nothing is compensated, which is another scenario)."""
    if compiled.sequential or plan.pivot or plan.after_pivot:
        return ()
    before = set(plan.ancestors)
    found = []
    for other in compiled.steps:
        if other.name == plan.name or other.name in before or plan.name in other.ancestors:
            continue
        if not set(other.ancestors) <= before:
            continue
        if other.wait or other.pivot or other.after_pivot or not _eligible(other):
            return ()
        found.append(other.name)
    return tuple(found)


def _trigger_for(compiled: CompiledSaga, plan: StepPlan) -> Fault | None:
    """The failure that makes ``plan``'s compensation run: the first later step (up to the
    pivot) failing, or else the step itself ending in doubt."""
    for later in compiled.steps:
        if (
            plan.name in later.ancestors
            and not later.after_pivot
            and not later.wait
            and _eligible(later)
        ):
            return Fault(later.name, NON_RETRYABLE)
    if not plan.pivot and not plan.after_pivot:
        return Fault(plan.name, NON_MAPPING)
    return None


def name_of(compiled: CompiledSaga, faults: Sequence[Fault], expected: Expected) -> str:
    """A scenario's name: its faults in words, then what the machine predicts."""
    if not faults:
        return f"happy path -> {expected}"
    first, *rest = faults
    text = first.describe(compiled.by_name[first.step])
    if rest:
        joined = " and ".join(f.describe(compiled.by_name[f.step]) for f in rest)
        text += f" (with {joined})" if first.back else f" and {joined}"
    return f"{text} -> {expected}"


def plans(compiled: CompiledSaga, *, crashes: bool = True, pairs: bool = False) -> list[Plan]:
    """Every scenario of the default set (plus pairs of faults with ``pairs``), in order:
    the happy path, each fault, then each crash point."""
    fault_sets: list[tuple[Fault, ...]] = [(), *single_faults(compiled)]
    singles = len(fault_sets)
    if pairs:
        fault_sets += list(_pairs(compiled, fault_sets[1:]))
    found = [_plan(compiled, faults) for faults in fault_sets]
    if crashes:
        found += list(_crash_plans(compiled, found[:singles]))
    return found


def _plan(compiled: CompiledSaga, faults: tuple[Fault, ...]) -> Plan:
    expected = predict(compiled, faults)
    quiet = tuple(f.step for f in faults if f.kind == WAIT_TIMES_OUT)
    return Plan(name_of(compiled, faults, expected), "fault", faults, None, expected, quiet)


def _pairs(
    compiled: CompiledSaga, singles: Sequence[tuple[Fault, ...]]
) -> Iterator[tuple[Fault, ...]]:
    """Two faults at once, on different calls, of which at most one ends its step."""
    for a, b in itertools.combinations(singles, 2):
        merged = tuple(dict.fromkeys((*a, *b)))
        calls = [(f.step, f.back) for f in merged]
        if len(set(calls)) != len(calls):
            continue
        if sum(f.ends_step(compiled.by_name[f.step]) for f in merged) > 1:
            continue
        yield merged


def calls_of(compiled: CompiledSaga, plan: Plan) -> list[tuple[str, bool]]:
    """The calls a scenario makes for sure (step, compensation?), in the order they run."""
    ending = [f for f in plan.faults if f.ends_step(compiled.by_name[f.step])]
    last = ending[0].step if ending else None
    forward: list[tuple[str, bool]] = []
    for p in compiled.steps:
        if p.wait or not _eligible(p):
            continue
        if last is None or p.name in compiled.by_name[last].ancestors or p.name == last:
            forward.append((p.name, False))
    undone = (*plan.expected.compensated, *plan.expected.gave_up)
    back = [(name, True) for name in undone if _eligible(compiled.by_name[name])]
    return forward + back


def _crash_plans(compiled: CompiledSaga, bases: Sequence[Plan]) -> Iterator[Plan]:
    """Each crash point on the happy path and on each single-fault path, once: a call's
    crash points are tried on the first path that makes it, and again on each path whose
    fault is on that very call."""
    seen: set[tuple[str, bool]] = set()
    for base in bases:
        if any(compiled.by_name[f.step].when is not None for f in base.faults):
            continue  # whether its calls happen at all depends on the data
        faulted = {(f.step, f.back) for f in base.faults}
        for call in calls_of(compiled, base):
            if call in seen and call not in faulted:
                continue
            seen.add(call)
            for after in (False, True):
                crash = Crash(call[0], call[1], after)
                prefix = base.name.rsplit(" -> ", 1)[0]
                expected = _after_crash(compiled, base, crash)
                yield Plan(
                    f"{prefix} | {crash.describe()} -> {expected}",
                    "crash",
                    base.faults,
                    crash,
                    expected,
                    base.unsignalled,
                )


def _after_crash(compiled: CompiledSaga, base: Plan, crash: Crash) -> Expected:
    """The prediction once the crash is taken into account: a fault that strikes once is
    forgotten when its call's outcome was lost, since the resumed run calls it again."""
    if crash.after:
        return base.expected
    kept = [
        f
        for f in base.faults
        if not ((f.step, f.back) == (crash.step, crash.back) and f.kind in _ONCE)
    ]
    return predict(compiled, kept)


def as_run(compiled: CompiledSaga, plan: Plan, skipped: Sequence[str]) -> Plan:
    """``plan`` with its prediction for a run in which the ``skipped`` steps did not run
    (their conditions were false for its data): their faults never struck."""
    if not {f.step for f in plan.faults} & set(skipped):
        return plan
    return attrs.evolve(plan, expected=predict(compiled, plan.faults, skipped))
