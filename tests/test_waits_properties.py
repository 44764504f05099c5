"""Engine invariants over random sagas with waits and conditional steps, in memory."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from statesaga import (
    Context,
    Saga,
    SagaResult,
    SagaStatus,
    SignalRefused,
    Step,
    Wait,
    compile_saga,
)
from statesaga.testing import FakeClock
from statesaga.vocabulary import SAGA_REGION, parse_name

# What each step is in one example.
OK = "ok"  # an action that succeeds
RAISE = "raise"  # an action that raises before doing anything
SIGNALLED = "signalled"  # a wait whose signal is sent right after the run starts
TIMES_OUT = "times_out"  # a wait nobody signals, whose timeout fails it
SLEEPS = "sleeps"  # a wait nobody signals, whose timeout lets the run go on
KINDS = (OK, RAISE, SIGNALLED, TIMES_OUT, SLEEPS)
WAITS = (SIGNALLED, TIMES_OUT, SLEEPS)

PROPERTY = settings(max_examples=120, deadline=None)
_names = itertools.count()


@dataclass(frozen=True)
class Plan:
    names: tuple[str, ...]
    depends_on: dict[str, tuple[str, ...]]
    kind: dict[str, str]
    skipped: frozenset[str]  # conditional steps whose condition is false
    conditional: frozenset[str]  # steps with a condition (true or false)

    @property
    def sequential(self) -> bool:
        return not any(self.depends_on.values())

    def deps(self, name: str) -> tuple[str, ...]:
        if self.sequential:
            i = self.names.index(name)
            return self.names[i - 1 : i]
        return self.depends_on[name]


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    sequential = draw(st.booleans())
    count = draw(st.integers(1 if sequential else 2, 7))
    names = tuple(f"s{i}" for i in range(count))
    depends_on: dict[str, tuple[str, ...]] = dict.fromkeys(names, ())
    if not sequential:
        for i, name in enumerate(names[1:], start=1):
            earlier = st.sampled_from(names[:i])
            depends_on[name] = tuple(draw(st.lists(earlier, unique=True, max_size=3)))
        if not any(depends_on.values()):
            depends_on[names[-1]] = (names[0],)
    kind = {n: draw(st.sampled_from(KINDS)) for n in names}
    conditional = frozenset(draw(st.sets(st.sampled_from(names))))
    skipped = frozenset(n for n in conditional if draw(st.booleans()))
    return Plan(names, depends_on, kind, skipped, conditional)


def _saga(plan: Plan, ledger: list[tuple[str, str]]) -> type[Saga]:
    def action(name: str) -> Any:
        async def act(ctx: Context) -> dict[str, Any]:
            ledger.append(("start", name))
            if plan.kind[name] == RAISE:
                raise RuntimeError(f"{name} failed")
            return {"seen": sorted(ctx.results)}

        return act

    def undo(name: str) -> Any:
        async def compensate(ctx: Context) -> None:
            ledger.append(("undo", name))

        return compensate

    def condition(name: str) -> Any:
        def when(ctx: Context) -> bool:
            ledger.append(("decide", name))
            return name not in plan.skipped

        return when

    steps: list[Step] = []
    for name in plan.names:
        when = condition(name) if name in plan.conditional else None
        deps = plan.depends_on[name]
        kind = plan.kind[name]
        if kind in WAITS:
            timeout = None if kind == SIGNALLED else 1.0
            on_timeout = "continue" if kind == SLEEPS else "fail"
            steps.append(
                Wait(name, timeout=timeout, on_timeout=on_timeout, depends_on=deps, when=when)
            )
        else:
            steps.append(
                Step(name, action(name), compensate=undo(name), depends_on=deps, when=when)
            )
    return type(f"WaitSaga{next(_names)}", (Saga,), {"steps": tuple(steps)})


def run(plan: Plan) -> tuple[SagaResult, list[tuple[str, str]], type[Saga]]:
    ledger: list[tuple[str, str]] = []
    saga = _saga(plan, ledger)

    async def main() -> SagaResult:
        handle = await saga().start(clock=FakeClock())
        for name in plan.names:
            if plan.kind[name] == SIGNALLED and name not in plan.skipped:
                # The run may have failed and ended already: the signal is then refused.
                with contextlib.suppress(SignalRefused):
                    await handle.signal(name, {"for": name})
        return await asyncio.wait_for(handle.result(), 10)

    return asyncio.run(main()), ledger, saga


@PROPERTY
@given(plans())
def test_a_run_with_waits_and_conditions_always_ends_consistently(plan: Plan) -> None:
    result, ledger, saga = run(plan)
    compiled = compile_saga(saga)
    started = {s for k, s in ledger if k == "start"}
    undone = [s for k, s in ledger if k == "undo"]
    completed, skipped = set(result.completed_steps), set(result.skipped_steps)
    # Skipped steps never ran and are never compensated; only false conditions skip.
    assert skipped <= plan.skipped
    assert not skipped & (started | set(undone) | completed)
    # A completed run went through every step, each succeeded or skipped.
    if result.status == SagaStatus.COMPLETED:
        assert completed | skipped == set(plan.names)
        assert result.failed_step is None
    else:
        assert result.failed_step is not None
        failed = result.failed_step
        assert plan.kind[failed] in (RAISE, TIMES_OUT) or failed in plan.conditional
    # Waits are never compensated; compensation undoes exactly the steps that succeeded.
    assert not {s for s in undone if plan.kind[s] in WAITS}
    if result.status == SagaStatus.COMPENSATED:
        assert set(undone) == {s for s in completed if plan.kind[s] not in WAITS}
    # A signalled wait's result is its payload; a sleep's is {}.
    for name in completed:
        if plan.kind[name] == SIGNALLED:
            assert result.results[name] == {"for": name}
        elif plan.kind[name] == SLEEPS:
            assert result.results[name] == {}
    # No step began before its dependencies were done (succeeded or skipped).
    for name in started:
        seen = set(result.results[name]["seen"]) if name in result.results else None
        if seen is not None:
            done_deps = {d for d in plan.deps(name) if d not in skipped}
            assert done_deps <= seen
    # The history replays on the compiled machine.
    config = {SAGA_REGION: compiled.initial}
    if not compiled.sequential:
        config.update({p.name: p.state("pending") for p in compiled.steps})
    for entry in result.history:
        region, dests = compiled.moves[entry.trigger]
        assert dests[config[region]] == entry.dest, entry
        config[region] = entry.dest
    assert parse_name(config[SAGA_REGION])[1] == result.status.value
