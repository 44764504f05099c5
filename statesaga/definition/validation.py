"""A saga's steps checked as a whole, and the order their dependencies give them.

Every problem is collected first and raised as one ``InvalidSagaError`` listing them all.
"""

from __future__ import annotations

import graphlib
from collections.abc import Mapping, Sequence

from ..errors import InvalidSagaError, Problem
from .step import NAME, NAME_RULE, Step


def validate_steps(
    saga: str, steps: object, problems_so_far: Sequence[Problem] = ()
) -> tuple[Step, ...]:
    """Check a saga's steps as a whole; raise one ``InvalidSagaError`` listing every problem.

    ``problems_so_far`` (found in the rest of the saga) are listed with them.
    """
    problems: list[Problem] = [*_saga_name_problems(saga), *problems_so_far]
    if isinstance(steps, str | bytes) or not isinstance(steps, Sequence | tuple | list):
        raise InvalidSagaError(
            saga, [*problems, Problem(None, "steps must be a tuple or list of Step objects")]
        )
    items = tuple(steps)
    if not items:
        raise InvalidSagaError(
            saga, [*problems, Problem(None, "the saga has no steps: list at least one")]
        )
    found_before = len(problems)
    seen: set[str] = set()
    for index, step in enumerate(items):
        if not isinstance(step, Step):
            problems.append(Problem(None, f"steps[{index}] is {type(step).__name__}, not a Step"))
        elif not isinstance(step.name, str):  # no name to file the problems under
            problems += [Problem(None, f"steps[{index}]: {p}") for p in step.problems()]
        else:
            if step.name in seen:
                problems.append(Problem(step.name, "the name is used by more than one step"))
            seen.add(step.name)
            problems += [Problem(step.name, p) for p in step.problems()]
    good = [s for s in items if isinstance(s, Step)]
    for step in good:
        if not isinstance(step.name, str) or not isinstance(step.depends_on, tuple):
            continue
        for dep in step.depends_on:
            if isinstance(dep, str) and dep not in seen and dep != step.name:
                problems.append(Problem(step.name, f"depends_on names unknown step {dep!r}"))
    if len(problems) == found_before:
        problems += _graph_problems(good)
    if problems:
        raise InvalidSagaError(saga, problems)
    return items


def _saga_name_problems(name: object) -> list[Problem]:
    # The name is written into stores, diagrams and their default file names.
    if isinstance(name, str) and NAME.fullmatch(name):
        return []
    return [
        Problem(
            None,
            f"name {name!r} cannot name the saga: set the class attribute name to {NAME_RULE}",
        )
    ]


def dependencies(steps: Sequence[Step]) -> dict[str, tuple[str, ...]]:
    """Each step's direct dependencies: written order unless some step names ``depends_on``."""
    if any(s.depends_on for s in steps):
        return {s.name: tuple(dict.fromkeys(s.depends_on)) for s in steps}
    return {s.name: ((steps[i - 1].name,) if i else ()) for i, s in enumerate(steps)}


def topological(steps: Sequence[Step], deps: Mapping[str, Sequence[str]]) -> list[str] | None:
    """Step names in an order that respects ``deps`` (ties in written order), or None if cyclic."""
    remaining = {s.name: len(deps[s.name]) for s in steps}
    dependants: dict[str, list[str]] = {s.name: [] for s in steps}
    for s in steps:
        for d in deps[s.name]:
            dependants[d].append(s.name)
    order = [s.name for s in steps if not remaining[s.name]]
    for name in order:  # grows while iterating: Kahn's algorithm
        for child in dependants[name]:
            remaining[child] -= 1
            if not remaining[child]:
                order.append(child)
    return order if len(order) == len(steps) else None


def _find_cycle(steps: Sequence[Step], deps: Mapping[str, Sequence[str]]) -> list[str]:
    """One dependency cycle, in dependency order from its first written step, closed."""
    try:
        graphlib.TopologicalSorter(deps).prepare()
    except graphlib.CycleError as error:
        cycle = list(error.args[1])[:-1]  # each a dependency of the next; last repeats first
        written = [s.name for s in steps]
        first = min(range(len(cycle)), key=lambda i: written.index(cycle[i]))
        cycle = cycle[first:] + cycle[:first]
        return [*cycle, cycle[0]]
    return []  # pragma: no cover - only called when a cycle exists


def ancestors(order: Sequence[str], deps: Mapping[str, Sequence[str]]) -> dict[str, frozenset[str]]:
    """Every step's transitive dependencies, given a topological ``order``."""
    result: dict[str, frozenset[str]] = {}
    for name in order:
        found: set[str] = set()
        for dep in deps[name]:
            found.add(dep)
            found |= result[dep]
        result[name] = frozenset(found)
    return result


def _graph_problems(steps: Sequence[Step]) -> list[Problem]:
    deps = dependencies(steps)
    order = topological(steps, deps)
    if order is None:
        cycle = _find_cycle(steps, deps)
        text = " -> ".join(cycle)
        return [Problem(cycle[0], f"depends_on forms a cycle: {text}; remove one of these edges")]
    problems = []
    before = ancestors(order, deps)
    for pivot in (s for s in steps if s.pivot):
        for step in steps:
            if step is pivot:
                continue
            after = pivot.name in before[step.name]
            if not after and step.name not in before[pivot.name]:
                problems.append(
                    Problem(
                        step.name,
                        f"neither runs before nor after pivot {pivot.name!r}: make it depend on "
                        "the pivot, or make the pivot depend on it",
                    )
                )
            elif after and step.compensate is not None:
                problems.append(
                    Problem(
                        step.name,
                        f"has a compensation but runs after pivot {pivot.name!r}, where nothing "
                        "is compensated: remove compensate= (use retry= to push it forward)",
                    )
                )
    return problems
