"""The properties of a compiled machine ``statesaga check`` shows before its scenarios,
proved again from the machine's transitions (the compiler proves them when it compiles)."""

from __future__ import annotations

import attrs

from ..compiler import CompiledSaga
from ..compiler.build import reachable_from
from ..vocabulary import Phase


@attrs.frozen
class Proof:
    """One property: what it says, and whether it holds (with what breaks it)."""

    claim: str
    holds: bool
    counterexamples: tuple[str, ...] = ()

    def __str__(self) -> str:
        mark = "proved" if self.holds else "FAILS"
        text = f"{mark}: {self.claim}"
        if self.counterexamples:
            text += f" (not for: {', '.join(self.counterexamples)})"
        return text


def _edges(compiled: CompiledSaga) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {s: set() for s in compiled.states}
    for t in compiled.transitions:
        if t.source != t.dest:
            found[t.source].add(t.dest)
    return found


def prove(compiled: CompiledSaga) -> list[Proof]:
    """Every state reaches an end, none is unreachable, and every compensable step's
    compensation can be reached from every later failure."""
    edges = _edges(compiled)
    # A DAG's step regions start in their steps' pending states (joins are left aside).
    starts = [compiled.initial]
    if not compiled.sequential:
        starts += [p.state(Phase.PENDING) for p in compiled.steps]
    reachable = reachable_from(starts, edges)
    ends = {s for s, out in edges.items() if not out}
    stuck = [s for s in compiled.states if not reachable_from([s], edges) & ends]
    if compiled.sequential:
        stuck += [s for s in ends if s not in compiled.terminal_states]
    unreachable = [s for s in compiled.states if s not in reachable]
    missing = []
    compensable = [p for p in compiled.steps if p.compensate is not None]
    for plan in compensable:
        target = plan.state(Phase.COMPENSATING)
        for later in compiled.steps:
            if plan.name not in later.ancestors or later.after_pivot:
                continue
            for t in compiled.transitions:
                if t.step != later.name or not t.failure:
                    continue
                # In a DAG the compensation is in the step's own region, from its success.
                source = t.dest if compiled.sequential else plan.state(Phase.SUCCEEDED)
                if target not in reachable_from([source], edges):
                    missing.append(f"{plan.name} after {t.trigger}")
    return [
        Proof(
            f"every state ({len(compiled.states)}) reaches a terminal state",
            not stuck,
            tuple(sorted(set(stuck))),
        ),
        Proof("no state is unreachable", not unreachable, tuple(unreachable)),
        Proof(
            f"every compensable step ({len(compensable)}) has a path to its compensation "
            "from every later failure",
            not missing,
            tuple(missing),
        ),
    ]
