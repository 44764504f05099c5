"""What every scenario checks once its run ended: the machine's prediction, and the promises
of the engine as the ledger of calls shows them."""

from __future__ import annotations

from collections.abc import Iterator

from ..compiler import CompiledSaga
from ..result import SagaResult
from ..store.base import RunSnapshot
from ..vocabulary import COMPENSATED, SUCCEEDED, TERMINAL, Phase, idempotency_key
from .inject import Runtime
from .plan import Plan


def problems(
    compiled: CompiledSaga,
    plan: Plan,
    result: SagaResult,
    runtime: Runtime,
    stored: RunSnapshot | None,
    at_crash: RunSnapshot | None,
) -> list[str]:
    """Everything that does not hold for this run (empty when all holds)."""
    return [
        *_prediction(compiled, plan, result, stored),
        *_ledger(compiled, plan, result, runtime, at_crash),
    ]


def _prediction(
    compiled: CompiledSaga, plan: Plan, result: SagaResult, stored: RunSnapshot | None
) -> Iterator[str]:
    expected = plan.expected
    if stored is not None and stored.run.status not in TERMINAL:
        yield f"the run did not reach a terminal state: it is stored as {stored.run.status!r}"
    if result.status != expected.status:
        yield f"status {result.status.value!r}, predicted {expected.status.value!r}"
    if result.failed_step != expected.failed_step:
        yield f"failed step {result.failed_step!r}, predicted {expected.failed_step!r}"
    skipped = set(result.skipped_steps)
    must = [s for s in expected.compensated if s not in skipped]
    done = list(result.compensated_steps)
    if compiled.sequential:
        if done != must:
            yield f"compensated {done}, predicted {must} (in that order)"
    else:
        missing = [s for s in must if s not in done]
        extra = [s for s in done if s not in must and s not in expected.maybe]
        if missing or extra:
            yield f"compensated {done}, predicted {must} (maybe also {list(expected.maybe)})"
        for later, name in enumerate(done):
            for earlier in done[:later]:
                if name in compiled.by_name[earlier].ancestors:
                    continue  # an ancestor after its dependant: the right order
                if earlier in compiled.by_name[name].ancestors:
                    yield (
                        f"{earlier} was compensated before {name}, which depends on it: "
                        "compensations must run in reverse dependency order"
                    )
    gave_up = sorted(result.compensation_errors)
    if gave_up != sorted(expected.gave_up):
        yield f"compensations that gave up: {gave_up}, predicted {sorted(expected.gave_up)}"
    # Every step that took effect is compensated when the run is: none is left behind.
    if result.status.value == COMPENSATED:
        left = [
            s
            for s in result.completed_steps
            if compiled.by_name[s].compensate is not None and s not in done
        ]
        if left:
            yield f"steps that succeeded were not compensated: {left}"


def _ledger(
    compiled: CompiledSaga,
    plan: Plan,
    result: SagaResult,
    runtime: Runtime,
    at_crash: RunSnapshot | None,
) -> Iterator[str]:
    ledger = runtime.ledger
    started = {c.step for c in ledger if not c.back}
    # A step stored as running when the process died may have taken effect: undoing it is
    # right, though the dying process had not called it yet.
    if at_crash is not None:
        started |= {n for n, s in at_crash.steps.items() if s.phase == Phase.RUNNING}
    for name in result.compensated_steps:
        if name not in started:
            yield f"{name} was compensated, but its action never started"
    for call in ledger:
        key = idempotency_key(result.saga_id, call.step, compensating=call.back)
        if call.key != key:
            yield f"{call.step} attempt {call.attempt} had key {call.key!r}, not {key!r}"
    # Within one process a call that succeeded is never made again (across a crash it
    # may be, if its success was not committed: the checks after the crash see to that).
    wins: dict[tuple[str, bool, int], int] = {}
    for c in ledger:
        if c.ok:
            wins[c.step, c.back, c.life] = wins.get((c.step, c.back, c.life), 0) + 1
    for (step, back, _), count in wins.items():
        if count > 1:
            yield f"{step}{' compensation' if back else ''} succeeded {count} times"
    if plan.crash is not None:
        yield from _after_crash(plan, runtime, at_crash)
    good = {c.key for c in ledger if c.ok}
    seen: set[str] = set()
    for message in result.messages:
        key = message.id.rsplit(":", 1)[0]
        if key not in good:
            yield f"message {message.id} came from a call whose success was not recorded"
        if message.id in seen:
            yield f"message {message.id} was emitted twice"
        seen.add(message.id)


def _after_crash(plan: Plan, runtime: Runtime, at_crash: RunSnapshot | None) -> Iterator[str]:
    crash = plan.crash
    assert crash is not None
    if not runtime.crashed or at_crash is None:
        yield f"the crash point was never reached ({crash.describe()})"
        return
    again = [c for c in runtime.ledger if c.life == 1]
    for name, step in at_crash.steps.items():
        if step.phase == SUCCEEDED and any(c.step == name and not c.back for c in again):
            yield f"{name} was recorded as succeeded, yet its action ran again after the resume"
        if step.phase == COMPENSATED and any(c.step == name and c.back for c in again):
            yield f"{name} was recorded as compensated, yet its compensation ran again"
    call = runtime.crash_call
    assert call is not None
    rerun = [c for c in again if (c.step, c.back) == (call.step, call.back)]
    if not crash.after and not rerun:
        yield f"{crash.call}'s outcome was never committed, yet it did not run again"
    if crash.after and call.ok and rerun:
        yield f"{crash.call}'s success was committed, yet it ran again after the resume"
