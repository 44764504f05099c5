"""Crash scenarios with a real process (``crashes="process"``): a child process runs the
scenario on SQLite and kills itself (``SIGKILL``) at the crash point; this process then
resumes the run from the store as a worker would.

The child is ``python -m statesaga.testing.process SPEC``: it imports the saga by its
reference, so the saga must be importable (defined in a module or a file, not a function).
What the dying child knew (its calls, its clock) is written to a file just before it dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs

from ..compiler import CompiledSaga, compile_saga
from ..definition import SagaDefinition
from ..durable.drive import finished_result, start
from ..durable.leases import owner_id
from ..durable.resources import StoreLike, open_store
from ..ids import new_run_id
from ..loader import load_saga, saga_reference, unimportable
from ..result import SagaResult
from ..store import store_from_url
from ..store.base import RunSnapshot, SagaStore
from .driving import resumer, through_waits
from .inject import Call, CrashingStore, Runtime, derive, running
from .kit import FakeClock
from .plan import plans

__all__ = ["drive_in_a_process", "needs_sqlite"]

#: How long the child may take to reach its crash point.
CHILD_SECONDS = 60.0


def needs_sqlite(store: StoreLike | None) -> None:
    """Refuse a store a killed process cannot share with this one."""
    if store is not None and not (isinstance(store, str) and store.startswith("sqlite:")):
        raise ValueError(
            'crashes="process" runs each crash scenario in a process that is killed: its '
            f"runs are stored in SQLite, so store= must be a sqlite:/// URL (or None), not "
            f"{store!r}"
        )


def reference_of(saga: type[SagaDefinition]) -> str:
    """Where the child process imports ``saga`` from, or ``ValueError`` saying why it cannot."""
    reference = saga_reference(saga)
    why = unimportable(reference)
    if why is not None:
        raise ValueError(
            f'crashes="process" runs {saga.__name__} in another process, which cannot import '
            f"it from {reference!r}: {why}. Define the saga in a module or a file."
        )
    return reference


@contextlib.asynccontextmanager
async def _store(url: str | None, folder: Path) -> AsyncIterator[tuple[str, SagaStore]]:
    if url is not None:
        yield url, await open_store(url)
        return
    url = f"sqlite:///{folder / 'runs.db'}"
    async with store_from_url(url) as store:
        yield url, store


async def drive_in_a_process(
    saga: type[SagaDefinition],
    compiled: CompiledSaga,
    data: dict[str, Any],
    runtime: Runtime,
    store: StoreLike | None,
    pairs: bool,
) -> tuple[SagaResult, RunSnapshot | None, RunSnapshot | None]:
    """Run the crash scenario in a child process killed at its crash point, then resume it
    here; like ``driving.drive``."""
    needs_sqlite(store)
    reference = reference_of(saga)
    run_id = new_run_id()
    with tempfile.TemporaryDirectory(prefix="statesaga-crash-") as tmp:
        folder = Path(tmp)
        async with _store(store if isinstance(store, str) else None, folder) as (url, inner):
            out = folder / "death.json"
            spec = {
                "reference": reference,
                "scenario": runtime.plan.name,
                "pairs": pairs,
                "data": data,
                "store": url,
                "run_id": run_id,
                "out": str(out),
            }
            (folder / "spec.json").write_text(json.dumps(spec))
            death = _death(out, *await _run_child(folder / "spec.json"))
            ledger = [Call(**call) for call in death["ledger"]]
            runtime.carry_on(ledger, death["crash_call"])
            if not death["crashed"]:  # it never reached its crash point: the checks say so
                stored = await inner.load(run_id)
                return finished_result(stored), stored, None
            at_crash = await inner.load(run_id)
            # A worker takes the run once the dead process's lease expires: at once here.
            await inner.release(run_id, death["owner"])
            clock = FakeClock(start=death["clock"])
            derived = derive(saga, compiled)
            wrapped: Any = CrashingStore(inner, runtime)

            again = resumer(wrapped, run_id, derived, clock)
            plan = compile_saga(derived)
            result = await through_waits(again(), again, inner, run_id, plan, runtime, clock)
            return result, await inner.load(run_id), at_crash


async def _run_child(spec: Path) -> tuple[int | None, bytes]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p or os.getcwd() for p in sys.path))
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        str(spec),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(child.communicate(), CHILD_SECONDS)
    except TimeoutError:
        child.kill()
        await child.wait()
        raise RuntimeError(f"the scenario's process did not end in {CHILD_SECONDS:g} s") from None
    return child.returncode, err


def _death(out: Path, code: int | None, err: bytes) -> dict[str, Any]:
    """What the child left, or why it left nothing."""
    if not out.exists():
        tail = err.decode(errors="replace")[-2000:]
        raise RuntimeError(f"the scenario's process exited {code}:\n{tail}")
    found: dict[str, Any] = json.loads(out.read_text())
    return found


def _leave(out: Path, runtime: Runtime, clock: FakeClock, crashed: bool) -> None:
    """Write what this process knew, for the one that resumes the run."""
    crash_call = None
    if crashed and runtime.crash_call is not None:
        crash_call = next(i for i, c in enumerate(runtime.ledger) if c is runtime.crash_call)
    death = {
        "ledger": [attrs.asdict(call) for call in runtime.ledger],
        "crash_call": crash_call,
        "crashed": crashed,
        "clock": clock.now,
        "owner": owner_id(),
    }
    out.write_text(json.dumps(death))


async def _child(spec: dict[str, Any]) -> None:
    saga = load_saga(spec["reference"])
    compiled = compile_saga(saga)
    [plan] = [
        p for p in plans(compiled, crashes=True, pairs=spec["pairs"]) if p.name == spec["scenario"]
    ]
    runtime = Runtime(plan, compiled.task_name)
    clock = FakeClock()
    out = Path(spec["out"])

    def die() -> None:
        _leave(out, runtime, clock, crashed=True)
        os.kill(os.getpid(), signal.SIGKILL)

    runtime.on_death = die
    derived = derive(saga, compiled)
    run_id = spec["run_id"]
    async with store_from_url(spec["store"]) as store:
        wrapped: Any = CrashingStore(store, runtime)
        scenario = running(runtime)
        scenario.__enter__()  # for good: this process ends with the scenario

        again = resumer(wrapped, run_id, derived, clock)
        first = start(compile_saga(derived), spec["data"], run_id, clock, wrapped)
        await through_waits(first, again, store, run_id, compile_saga(derived), runtime, clock)
    _leave(out, runtime, clock, crashed=False)


if __name__ == "__main__":
    asyncio.run(_child(json.loads(Path(sys.argv[1]).read_text())))
