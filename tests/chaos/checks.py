"""What the chaos test reads back after the chaos, and the promises it checks: each a list of
the runs, steps and messages that broke it (empty when kept)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable

import attrs

from .saga import STEPS


@attrs.frozen
class Execution:
    """One row of ``chaos_effects``: a step's action called once."""

    run_id: str
    step: str
    idem_key: str
    attempt: int
    pid: int
    started_at: float


@attrs.frozen
class Interruption:
    """A worker SIGKILLed (``kill``) or SIGTERMed (``term``) at ``at``, holding ``held``.

    ``taken`` is filled while the chaos goes on: for each run held, when it was first seen
    (polled every few ms) leased to another worker, or finished.
    """

    kind: str
    pid: int
    at: float
    held: tuple[str, ...]
    taken: dict[str, float] = attrs.field(factory=dict, eq=False)
    #: For each run taken: the pid of the worker seen holding it (None: seen finished).
    takers: dict[str, int | None] = attrs.field(factory=dict, eq=False)
    #: For each run held: when its lease ran out, as first seen after the interruption.
    expires: dict[str, float] = attrs.field(factory=dict, eq=False)
    #: For each run taken: when the taker's lease began (its expiry less the lease seconds;
    #: a renewal before the look makes it later, never earlier).
    leased_at: dict[str, float] = attrs.field(factory=dict, eq=False)


@attrs.frozen
class Observed:
    """Everything read back from PostgreSQL once the cluster settled."""

    statuses: dict[str, str]
    #: (run, trigger) -> the times of that transition in the run's history.
    transitions: dict[tuple[str, str], list[float]]
    executions: list[Execution]
    #: Applied messages in the order the inbox applied them: (message id, run, step).
    applied: list[tuple[str, str, str]]


def unfinished(observed: Observed) -> list[str]:
    return [
        f"run {r} ended {s}, not completed"
        for r, s in observed.statuses.items()
        if s != "completed"
    ]


def steps_run_again(observed: Observed, interruptions: Iterable[Interruption]) -> list[str]:
    """A step runs again only when its success was not committed when its worker was killed:
    every execution before the last is by a SIGKILLed worker, killed after it started, and no
    execution starts after the step's recorded success. Each carries the step's key."""
    killed = {i.pid: i.at for i in interruptions if i.kind == "kill"}
    by_step: dict[tuple[str, str], list[Execution]] = defaultdict(list)
    for execution in observed.executions:
        by_step[(execution.run_id, execution.step)].append(execution)
    problems = []
    for run_id in observed.statuses:
        for step in STEPS:
            runs = sorted(by_step.get((run_id, step), []), key=lambda e: e.started_at)
            successes = observed.transitions.get((run_id, f"{step}.succeed"), [])
            where = f"run {run_id} step {step}"
            if len(successes) != 1:
                problems.append(f"{where}: {len(successes)} successes in its history, not 1")
                continue
            if not runs:
                problems.append(f"{where}: succeeded without any recorded execution")
                continue
            for execution in runs:
                if execution.idem_key != f"{run_id}:{step}":
                    problems.append(f"{where}: executed with key {execution.idem_key!r}")
                if execution.started_at > successes[0]:
                    problems.append(
                        f"{where}: executed again by pid {execution.pid} at "
                        f"{execution.started_at:.3f}, after its success at {successes[0]:.3f}"
                    )
            for earlier in runs[:-1]:
                death = killed.get(earlier.pid)
                if death is None or death < earlier.started_at:
                    problems.append(
                        f"{where}: executed {len(runs)} times; pid {earlier.pid}'s execution "
                        f"(attempt {earlier.attempt}, {earlier.started_at:.3f}) was not cut "
                        "short by a SIGKILL"
                    )
    return problems


def messages_not_once_in_order(observed: Observed) -> list[str]:
    """Every step's message applied exactly once through the inbox, each run's in step order."""
    counts: dict[str, int] = defaultdict(int)
    order: dict[str, list[str]] = defaultdict(list)
    for message_id, run_id, step in observed.applied:
        counts[message_id] += 1
        order[run_id].append(step)
    problems = []
    for run_id in observed.statuses:
        for step in STEPS:
            message_id = f"{run_id}:{step}:1"
            if counts.get(message_id, 0) != 1:
                problems.append(f"message {message_id} applied {counts.get(message_id, 0)} times")
        if order[run_id] != list(STEPS) and sorted(order[run_id]) == list(STEPS):
            problems.append(f"run {run_id}'s messages applied in the order {order[run_id]}")
    unknown = set(counts) - {f"{r}:{s}:1" for r in observed.statuses for s in STEPS}
    problems += [f"message {m} applied but no step emitted it" for m in sorted(unknown)]
    return problems


def leases_taken(observed: Observed, interruption: Interruption) -> dict[str, float]:
    """For each run the worker held that another worker went on with, seconds from the
    interruption to the moment another worker was seen holding its lease (or the run was
    seen finished, if it went faster than one look). A run a draining worker finished itself
    is left out."""
    others = {
        e.run_id
        for e in observed.executions
        if e.pid != interruption.pid and e.started_at > interruption.at
    }
    return {
        run_id: at - interruption.at
        for run_id, at in interruption.taken.items()
        if interruption.kind == "kill" or run_id in others
    }


def takeovers(
    observed: Observed, interruption: Interruption, everyone: Iterable[Interruption] = ()
) -> dict[str, float]:
    """For each run the worker held, seconds from the interruption to the next step execution
    by another worker (or, when no step was left, the next transition in its history). After
    a SIGTERM, from the moment the drain released the run: the commit of the step it let
    finish (the signal itself if the run was between steps). A run whose next taker was
    interrupted too before that step (among ``everyone``) counts for that interruption."""
    next_execution: dict[str, float] = {}
    for execution in observed.executions:
        if execution.pid != interruption.pid and execution.started_at > interruption.at:
            known = next_execution.get(execution.run_id, execution.started_at)
            next_execution[execution.run_id] = min(known, execution.started_at)
    times = {}
    for run_id in interruption.held:
        after = [
            at
            for (run, _), ats in observed.transitions.items()
            if run == run_id
            for at in ats
            if at > interruption.at
        ]
        if run_id in next_execution and interruption.kind == "term":
            # From the drained run's last commit (the success of the step it was running,
            # after which its lease is released), or from the signal if it was between steps.
            paused = [
                at
                for (run, trigger), ats in observed.transitions.items()
                if run == run_id and trigger.endswith(".succeed")
                for at in ats
                if interruption.at < at < next_execution[run_id]
            ]
            times[run_id] = next_execution[run_id] - max([interruption.at, *paused])
        elif run_id in next_execution:
            times[run_id] = next_execution[run_id] - interruption.at
        elif after and interruption.kind == "kill":
            times[run_id] = min(after) - interruption.at
        # else: the worker finished the run itself (a drain completes what it can)
    for later in everyone:
        for run_id in set(times) & set(later.held):
            if interruption.at < later.at < interruption.at + times[run_id]:
                del times[run_id]
    return times


def late_takeovers(
    observed: Observed,
    interruptions: Iterable[Interruption],
    bounds: dict[str, float],
    measure: Callable[[Observed, Interruption], dict[str, float]] = leases_taken,
    what: str = "leased by another worker",
    started: dict[int, float] | None = None,
) -> list[str]:
    """Runs whose ``measure`` (by default: the time until another worker held their lease)
    exceeds ``bounds[kind]`` seconds after their worker's interruption; each says which
    worker took it and, from ``started`` (pid -> when its process started), how long before
    (or after) the interruption that worker had started."""
    problems = []
    for interruption in interruptions:
        for run_id, took in sorted(measure(observed, interruption).items()):
            if took > bounds[interruption.kind]:
                taker = interruption.takers.get(run_id)
                by = "" if taker is None else f", by pid {taker}"
                if taker is not None and started and taker in started:
                    by += f" (started {interruption.at - started[taker]:+.2f} s before)"
                expires = interruption.expires.get(run_id)
                if expires is not None:
                    by += f"; its lease ran out {expires - interruption.at:.2f} s after"
                leased = interruption.leased_at.get(run_id)
                if leased is not None:
                    by += f"; the new lease began {leased - interruption.at:.2f} s after"
                problems.append(
                    f"run {run_id}: {what} {took:.2f} s after pid {interruption.pid}'s "
                    f"{interruption.kind}{by} (bound {bounds[interruption.kind]:.2f} s)"
                )
    return problems


def summary(values: list[float]) -> str:
    """``median / p99 / max (n)`` of ``values``, in seconds."""
    if not values:
        return "none measured"
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return (
        f"median {statistics.median(ordered):.2f} s, p99 {p99:.2f} s, "
        f"max {ordered[-1]:.2f} s ({len(ordered)} runs)"
    )
