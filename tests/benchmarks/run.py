"""Benchmarks: engine overhead against hand-written asyncio sagas, and compile time.

Run with ``make bench`` or ``.venv/bin/python tests/benchmarks/run.py [--quick] [--json PATH]``.

Nothing here is collected by pytest (no ``test_*.py`` file, no ``__init__.py``). Every number
printed is measured in this run; the goals are the only constants.

1. Runtime: N concurrent runs (``asyncio.gather``) of a 4-step saga whose actions and
   compensations are no-op coroutines, against the same coroutines hand-written as one
   ``async def`` with a try/except that compensates the steps done so far. Engine and
   baseline rounds alternate so that machine drift hits both alike; the median round is
   reported per saga. Three shapes: a chain that completes, a chain whose last step fails
   (compensation path), and a diamond DAG (a; b, c after a; d after b and c).
2. Compile time: fresh 200-step DAG saga classes (up to 3 random earlier dependencies per
   step, fixed seed), timing class creation (which validates) and ``compile_saga`` separately
   and together, with state and transition counts at 50, 100 and 200 steps to show growth is
   linear.

Sections 3 (durable runs), 3b (one durable run at a time), 3c (beside DBOS), 5 (PostgreSQL),
6 (observability), 7 (messaging), 8 (consumer inbox), 9 (import time) and 10 (waits) are
described in the modules beside this script: ``durable.py``, ``one_at_a_time.py``,
``dbos_compare.py``, ``postgres.py``, ``observe.py``, ``messaging.py``, ``inbox.py``,
``imports.py`` and ``waits.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dbos_compare import bench_dbos
from dbos_compare import missing as dbos_missing
from durable import bench_durable  # tests/benchmarks/durable.py, beside this script
from explore import ExploreTiming, bench_explore
from imports import bench_imports
from inbox import bench_inbox
from messaging import bench_messaging
from messaging import reachable as rabbitmq_reachable
from observe import bench_observe
from one_at_a_time import bench_one_at_a_time
from postgres import URL as PG_URL
from postgres import bench_postgres
from postgres import reachable as postgres_reachable
from ui_pages import PageTiming, bench_ui
from waits import Latency, ManyWaiting, bench_latency, bench_many_waiting

from statesaga import Saga, SagaStatus, Step, compile_saga

DURABLE_SAGAS = 100
POSTGRES_SAGAS = 400
MESSAGING_SAGAS = 250  # 4 messages each
INBOX_MESSAGES = 2000
DIAGRAM_STEPS = 50
DIAGRAM_CHAIN_STEPS = 60
DIAGRAM_GOAL_MS = 1000.0  # DOT text + Graphviz to SVG for a 50-step DAG, or a 60-step chain
DURABLE_GOAL = 2.0  # floor sagas/s / engine sagas/s, SQLite, every transition durable
ONE_AT_A_TIME_GOAL = 1.5  # engine ms / plain sqlite3 ms per run, one durable run at a time
ONE_AT_A_TIME_RUNS = 20  # runs per round
DBOS_GOAL = 8.0  # DBOS ms / statesaga ms per run, one at a time (at least)
DBOS_IN_FLIGHT = 100
RATIO_GOAL = 3.0  # engine time per saga / hand-written time per saga, 4-step chain
COMPILE_GOAL_MS = 50.0  # class creation + compile_saga, 200-step DAG
IMPORT_GOAL = 2.0  # import statesaga / import asyncio, each timed in a fresh interpreter
WAITING_RUNS = (100, 10_000)  # runs waiting for a worker over one SQLite store (10a)
WAITS_DUE = 200  # of them, timeouts that fall due while the worker runs
WAIT_START_GOAL_S = 2.0  # worker start -> a wait due before it started has ended
WAIT_LATE_GOAL_MS = 1000.0  # how late a timeout may fire
SIGNAL_GOAL_MS = 50.0  # signal -> next step, median, same process and to a PostgreSQL worker
SIGNAL_SAMPLES = 30
COMPILE_SIZES = (50, 100, 200)
SEED = 20240601
MAX_DEPS = 3


# -- the sagas --------------------------------------------------------------------------------


async def noop(ctx: Any) -> None:
    """An action or compensation that does nothing."""
    return None


class StepFailed(Exception):
    """Raised by the failing last step (the same exception in engine and baseline)."""


async def boom(ctx: Any) -> None:
    """An action that always fails."""
    raise StepFailed("boom")


class Bench(Saga):
    """4-step chain, every step compensable, completes."""

    steps = (
        Step("a", noop, compensate=noop),
        Step("b", noop, compensate=noop),
        Step("c", noop, compensate=noop),
        Step("d", noop, compensate=noop),
    )


class BenchFail(Saga):
    """4-step chain whose last step fails: a, b and c are compensated."""

    steps = (
        Step("a", noop, compensate=noop),
        Step("b", noop, compensate=noop),
        Step("c", noop, compensate=noop),
        Step("d", boom, compensate=noop),
    )


class BenchDag(Saga):
    """Diamond DAG: a; b and c after a; d after b and c."""

    steps = (
        Step("a", noop, compensate=noop),
        Step("b", noop, compensate=noop, depends_on="a"),
        Step("c", noop, compensate=noop, depends_on="a"),
        Step("d", noop, compensate=noop, depends_on=("b", "c")),
    )


# Hand-written baselines: the same coroutines, called directly, with the bookkeeping a
# careful author would write (a list of the steps done, undone in reverse on failure).


async def hand_chain_unrolled(data: dict[str, Any]) -> str:
    """The 4-step chain with each call written out (no loop over a table)."""
    done: list[Callable[[Any], Awaitable[None]]] = []
    try:
        await noop(data)
        done.append(noop)
        await noop(data)
        done.append(noop)
        await noop(data)
        done.append(noop)
        await noop(data)
        done.append(noop)
    except Exception:
        for compensate in reversed(done):
            await compensate(data)
        return "compensated"
    return "completed"


async def hand_chain_fail_unrolled(data: dict[str, Any]) -> str:
    """The failing 4-step chain with each call written out."""
    done: list[Callable[[Any], Awaitable[None]]] = []
    try:
        await noop(data)
        done.append(noop)
        await noop(data)
        done.append(noop)
        await noop(data)
        done.append(noop)
        await boom(data)
        done.append(noop)
    except Exception:
        for compensate in reversed(done):
            await compensate(data)
        return "compensated"
    return "completed"


async def hand_dag(data: dict[str, Any]) -> str:
    """The diamond DAG written by hand: b and c run concurrently."""
    done: list[Callable[[Any], Awaitable[None]]] = []
    try:
        await noop(data)
        done.append(noop)
        outcomes = await asyncio.gather(noop(data), noop(data), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        done += [noop for o in outcomes if not isinstance(o, BaseException)]
        if errors:
            raise errors[0]
        await noop(data)
        done.append(noop)
    except Exception:
        for compensate in reversed(done):
            await compensate(data)
        return "compensated"
    return "completed"


async def hand_chain_guarded(data: dict[str, Any]) -> str:
    """The unrolled chain with the engine's cancellation guarantee, written by hand.

    To keep a caller's cancellation from interrupting a running step, the saga runs in a task
    of its own, which the caller's cancellation does not reach (``shield``): the cheapest way
    to give that guarantee with asyncio's public API. On 3.12 the task starts eagerly, so a
    saga that never waits ends before the caller waits; 3.11 has no public way to do that.
    """
    loop = asyncio.get_running_loop()
    if sys.version_info >= (3, 12):
        task = asyncio.Task(hand_chain_unrolled(data), loop=loop, eager_start=True)
        if task.done():
            return task.result()
    else:
        task = loop.create_task(hand_chain_unrolled(data))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])  # let the running step finish, then re-raise
        raise


# -- runtime benchmark ------------------------------------------------------------------------


@dataclass
class RuntimeResult:
    """One scenario: engine and baseline, microseconds per saga."""

    scenario: str
    sagas_per_round: int
    rounds: int
    baseline_us: float
    engine_us: float
    ratio: float
    goal: float | None
    passed: bool | None
    baseline_rounds_us: list[float] = field(default_factory=list)
    engine_rounds_us: list[float] = field(default_factory=list)


Batch = Callable[[int], Awaitable[list[Any]]]


def engine_batch(saga: type[Saga]) -> Batch:
    async def batch(n: int) -> list[Any]:
        return await asyncio.gather(*(saga(i=i).execute() for i in range(n)))

    return batch


def baseline_batch(saga: Callable[[dict[str, Any]], Awaitable[str]]) -> Batch:
    async def batch(n: int) -> list[Any]:
        return await asyncio.gather(*(saga({"i": i}) for i in range(n)))

    return batch


async def timed(batch: Batch, n: int) -> float:
    """Seconds one batch of ``n`` concurrent sagas takes."""
    gc.collect()
    start = time.perf_counter()
    await batch(n)
    return time.perf_counter() - start


async def bench_runtime(
    scenario: str,
    saga: type[Saga],
    baseline: Callable[[dict[str, Any]], Awaitable[str]],
    expected: SagaStatus,
    *,
    n: int,
    rounds: int,
    goal: float | None,
) -> RuntimeResult:
    compile_saga(saga)  # compiled once, as in any long-running process
    engine, hand = engine_batch(saga), baseline_batch(baseline)
    # Warm-up round (unmeasured) that also checks both sides do what they claim.
    statuses = {r.status for r in await engine(n)}
    if statuses != {expected}:
        raise SystemExit(f"{scenario}: engine ended {statuses}, expected {expected}")
    hand_statuses = set(await hand(n))
    if hand_statuses != {str(expected)}:
        raise SystemExit(f"{scenario}: baseline ended {hand_statuses}, expected {expected}")
    engine_times: list[float] = []
    hand_times: list[float] = []
    for i in range(rounds):
        # Alternate which side goes first so that drift within a pair cancels too.
        if i % 2:
            engine_times.append(await timed(engine, n))
            hand_times.append(await timed(hand, n))
        else:
            hand_times.append(await timed(hand, n))
            engine_times.append(await timed(engine, n))
    per_saga = 1e6 / n
    engine_us = statistics.median(engine_times) * per_saga
    hand_us = statistics.median(hand_times) * per_saga
    # The median of each round's own ratio: a round's engine and baseline ran back to back,
    # so what the machine was doing then weighs on both.
    ratio = statistics.median(e / h for e, h in zip(engine_times, hand_times, strict=True))
    return RuntimeResult(
        scenario=scenario,
        sagas_per_round=n,
        rounds=rounds,
        baseline_us=hand_us,
        engine_us=engine_us,
        ratio=ratio,
        goal=goal,
        passed=None if goal is None else ratio <= goal,
        baseline_rounds_us=[t * per_saga for t in hand_times],
        engine_rounds_us=[t * per_saga for t in engine_times],
    )


# -- compile benchmark ------------------------------------------------------------------------


@dataclass
class CompileResult:
    """Compile time of one random DAG size (milliseconds, median over repetitions)."""

    steps: int
    edges: int
    repetitions: int
    states: int
    transitions: int
    create_ms: float
    compile_ms: float
    total_ms: float
    goal_ms: float | None
    passed: bool | None


def random_dag(size: int, seed: int = SEED) -> tuple[Step, ...]:
    """``size`` compensable steps; each after the first depends on 1..3 random earlier ones."""
    rng = random.Random(seed)
    steps = []
    for i in range(size):
        deps = rng.sample(range(i), k=rng.randint(1, min(MAX_DEPS, i))) if i else []
        steps.append(
            Step(f"s{i:03d}", noop, compensate=noop, depends_on=tuple(f"s{d:03d}" for d in deps))
        )
    return tuple(steps)


def bench_compile(size: int, repetitions: int, goal_ms: float | None) -> CompileResult:
    steps = random_dag(size)
    create: list[float] = []
    compile_: list[float] = []
    total: list[float] = []
    states = transitions = 0
    # One unmeasured repetition first (imports, caches), then fresh classes each time:
    # compile_saga caches per class, so reusing a class would time a dict lookup.
    for rep in range(repetitions + 1):
        gc.collect()
        t0 = time.perf_counter()
        cls = type(f"Dag{size}_{rep}", (Saga,), {"steps": steps})  # validates
        t1 = time.perf_counter()
        compiled = compile_saga(cls)
        t2 = time.perf_counter()
        if rep:
            create.append((t1 - t0) * 1e3)
            compile_.append((t2 - t1) * 1e3)
            total.append((t2 - t0) * 1e3)
        states, transitions = len(compiled.states), len(compiled.transitions)
        del cls, compiled
    total_ms = statistics.median(total)
    return CompileResult(
        steps=size,
        edges=sum(len(s.depends_on) for s in steps),
        repetitions=repetitions,
        states=states,
        transitions=transitions,
        create_ms=statistics.median(create),
        compile_ms=statistics.median(compile_),
        total_ms=total_ms,
        goal_ms=goal_ms,
        passed=None if goal_ms is None else total_ms < goal_ms,
    )


def chain(size: int) -> tuple[Step, ...]:
    """``size`` compensable steps, one after another (no ``depends_on``)."""
    return tuple(Step(f"s{i:03d}", noop, compensate=noop) for i in range(size))


def bench_diagram(
    size: int, repetitions: int, shape: Callable[[int], tuple[Step, ...]] = random_dag
) -> tuple[float, float] | None:
    """Median ms to draw a ``size``-step saga of ``shape``: (DOT text only, DOT text + dot to
    SVG)."""
    if shutil.which("dot") is None:
        return None
    from statesaga.render import dot_of
    from statesaga.render.dot import to_svg

    text_ms, svg_ms = [], []
    for rep in range(repetitions + 1):
        cls = type(f"Draw{size}_{rep}", (Saga,), {"steps": shape(size)})
        compiled = compile_saga(cls)
        t0 = time.perf_counter()
        dot_text = dot_of(compiled)
        t1 = time.perf_counter()
        to_svg(dot_text)
        t2 = time.perf_counter()
        if rep:  # the first one warms up
            text_ms.append((t1 - t0) * 1e3)
            svg_ms.append((t2 - t0) * 1e3)
    return statistics.median(text_ms), statistics.median(svg_ms)


# -- report -----------------------------------------------------------------------------------


def verdict(passed: bool | None) -> str:
    return "-" if passed is None else ("PASS" if passed else "FAIL")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    fmt = "  ".join(f"{{:>{w}}}" if i else f"{{:<{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*headers), line, *(fmt.format(*r) for r in rows)])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rounds (a smoke run)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write results as JSON")
    parser.add_argument("--rounds", type=int, help="measured rounds per runtime scenario")
    parser.add_argument("--sagas", type=int, default=1000, help="concurrent sagas per round")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 3 if args.quick else 15
    if args.rounds < 1 or args.sagas < 1:
        parser.error("--rounds and --sagas must be at least 1")
    return args


async def run_runtime(n: int, rounds: int) -> list[RuntimeResult]:
    completed, compensated = SagaStatus.COMPLETED, SagaStatus.COMPENSATED
    return [
        await bench_runtime(
            "chain, 4 steps, completes",
            Bench,
            hand_chain_unrolled,
            completed,
            n=n,
            rounds=rounds,
            goal=RATIO_GOAL,
        ),
        await bench_runtime(
            "chain, 4 steps, completes, vs guarded",
            Bench,
            hand_chain_guarded,
            completed,
            n=n,
            rounds=rounds,
            goal=None,
        ),
        await bench_runtime(
            "chain, 4 steps, last fails",
            BenchFail,
            hand_chain_fail_unrolled,
            compensated,
            n=n,
            rounds=rounds,
            goal=None,
        ),
        await bench_runtime(
            "DAG a;b,c;d, completes",
            BenchDag,
            hand_dag,
            completed,
            n=n,
            rounds=rounds,
            goal=None,
        ),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    repetitions = 5 if args.quick else 15
    cpus = os.cpu_count()
    print(f"statesaga benchmarks{' (quick)' if args.quick else ''}")
    print(
        f"python {platform.python_version()} ({platform.python_implementation()}) on {sys.platform}"
    )
    print(f"cpus: {cpus}   machine: {platform.machine()}   loop: asyncio (default)")
    print()

    runtime = asyncio.run(run_runtime(args.sagas, args.rounds))
    print(
        f"1. runtime: {args.sagas} concurrent sagas per round, {args.rounds} alternating rounds "
        "(after 1 warm-up): medians in microseconds per saga, and the median of the rounds' "
        "own ratios"
    )
    print(
        table(
            ["scenario", "baseline µs", "engine µs", "ratio", "goal", "result"],
            [
                [
                    r.scenario,
                    f"{r.baseline_us:.2f}",
                    f"{r.engine_us:.2f}",
                    f"{r.ratio:.2f}x",
                    "-" if r.goal is None else f"<= {r.goal:.1f}x",
                    verdict(r.passed),
                ]
                for r in runtime
            ],
        )
    )
    print("   (rounds, µs/saga, engine: min..max)")
    for r in runtime:
        print(
            f"   {r.scenario}: baseline {min(r.baseline_rounds_us):.2f}.."
            f"{max(r.baseline_rounds_us):.2f}, engine {min(r.engine_rounds_us):.2f}.."
            f"{max(r.engine_rounds_us):.2f}"
        )
    print()

    compiles = [
        bench_compile(size, repetitions, COMPILE_GOAL_MS if size == max(COMPILE_SIZES) else None)
        for size in COMPILE_SIZES
    ]
    print(
        f"2. compile: random DAG (1..{MAX_DEPS} deps per step, seed {SEED}), fresh class per "
        f"repetition, median of {repetitions}, milliseconds"
    )
    print(
        table(
            [
                "steps",
                "deps",
                "states",
                "transitions",
                "states/step",
                "trans/step",
                "create ms",
                "compile ms",
                "total ms",
                "µs/step",
                "goal",
                "result",
            ],
            [
                [
                    str(c.steps),
                    str(c.edges),
                    str(c.states),
                    str(c.transitions),
                    f"{c.states / c.steps:.2f}",
                    f"{c.transitions / c.steps:.2f}",
                    f"{c.create_ms:.2f}",
                    f"{c.compile_ms:.2f}",
                    f"{c.total_ms:.2f}",
                    f"{c.total_ms * 1e3 / c.steps:.1f}",
                    "-" if c.goal_ms is None else f"< {c.goal_ms:.0f} ms",
                    verdict(c.passed),
                ]
                for c in compiles
            ],
        )
    )
    print("   create = type(...) with steps (validates); compile = compile_saga (re-validates)")
    print()

    gc.collect()  # what earlier sections left behind must not be collected during this one
    durable = asyncio.run(bench_durable(DURABLE_SAGAS, 3 if args.quick else 9, DURABLE_GOAL))
    print(
        f"3. durable: {durable.sagas} concurrent 4-step sagas on SQLite (WAL, synchronous=FULL), "
        f"{durable.rounds} alternating rounds: medians in sagas per second, and the median of "
        "the rounds' own ratios"
    )
    print(
        table(
            ["every transition durable", "floor /s", "engine /s", "ratio", "goal", "result"],
            [
                [
                    label,
                    f"{durable.floor_per_s:.0f}",
                    f"{per_s:.0f}",
                    f"{ratio:.2f}x",
                    f"<= {durable.goal:.1f}x",
                    verdict(ratio <= durable.goal),
                ]
                for label, per_s, ratio in (
                    ('execute(store="sqlite:///...")', durable.url_per_s, durable.url_ratio),
                    ("execute(store=SQLiteStore(...))", durable.object_per_s, durable.object_ratio),
                )
            ],
        )
    )
    print(
        "   floor = plain sqlite3, one thread, the same rows in one transaction per write-ahead"
        " point; by URL after one earlier run opened the store"
    )
    print(
        f"   a cold burst by URL ({durable.sagas} runs at once, the store opened by the first):"
        f" {durable.cold_url_ms:.1f} ms in all"
    )
    print(
        f"   one run alone (nothing concurrent): {durable.url_latency_ms:.2f} ms by URL, "
        f"{durable.object_latency_ms:.2f} ms with a store object"
    )
    print()

    gc.collect()
    alone = asyncio.run(
        bench_one_at_a_time(ONE_AT_A_TIME_RUNS, 5 if args.quick else 15, ONE_AT_A_TIME_GOAL)
    )
    print(
        f"3b. one durable run at a time on SQLite (a saga per request): {alone.rounds} "
        f"alternating rounds of {alone.runs} runs of a 4-step chain by URL, against plain sqlite3 "
        "making the same five commits with the same rows"
    )
    print(
        table(
            ["plain sqlite3 ms/run", "engine ms/run", "ratio", "goal", "result"],
            [
                [
                    f"{alone.sqlite_ms:.2f}",
                    f"{alone.engine_ms:.2f}",
                    f"{alone.ratio:.2f}x",
                    f"<= {alone.goal:.1f}x",
                    verdict(alone.passed),
                ]
            ],
        )
    )
    print()

    why_no_dbos = dbos_missing()
    gc.collect()
    beside = (
        None
        if why_no_dbos
        else asyncio.run(
            bench_dbos(2 if args.quick else 5, ONE_AT_A_TIME_RUNS, DBOS_IN_FLIGHT, DBOS_GOAL)
        )
    )
    print(
        "3c. beside DBOS on this machine: a 4-step workflow of no-op steps on SQLite, one at a "
        f"time and {DBOS_IN_FLIGHT} in flight"
    )
    if beside is None:
        print(f"   skipped: {why_no_dbos}")
    else:
        print(
            table(
                ["", f"DBOS {beside.dbos_version}", "statesaga by URL", "statesaga faster", "goal"],
                [
                    [
                        "one at a time, ms/run",
                        f"{beside.dbos_ms:.2f}",
                        f"{beside.statesaga_ms:.2f}",
                        f"{beside.one_ratio:.1f}x",
                        f">= {beside.goal:.0f}x: {verdict(beside.passed)}",
                    ],
                    [
                        f"{beside.in_flight} in flight, runs/s",
                        f"{beside.dbos_per_s:.0f}",
                        f"{beside.statesaga_per_s:.0f}",
                        f"{beside.flight_ratio:.1f}x",
                        "-",
                    ],
                ],
            )
        )
    print()

    drawn = bench_diagram(DIAGRAM_STEPS, 3 if args.quick else 7)
    drawn_chain = bench_diagram(DIAGRAM_CHAIN_STEPS, 3 if args.quick else 7, chain)
    print(
        f"4. diagram: {DIAGRAM_STEPS}-step DAG (same random shape) and {DIAGRAM_CHAIN_STEPS}-step "
        "chain, milliseconds, median"
    )
    if drawn is None or drawn_chain is None:
        print("   skipped: Graphviz's dot is not installed")
    else:
        for name, (text_ms, svg_ms) in (("DAG", drawn), ("chain", drawn_chain)):
            print(
                f"   {name}: DOT text {text_ms:.1f} ms; DOT text + dot to SVG {svg_ms:.1f} ms "
                f"(goal < {DIAGRAM_GOAL_MS:.0f} ms: {verdict(svg_ms < DIAGRAM_GOAL_MS)})"
            )
    print()

    why_not = postgres_reachable()
    pg = [] if why_not else bench_postgres(POSTGRES_SAGAS, 1 if args.quick else 3)
    print(
        f"5. PostgreSQL: {POSTGRES_SAGAS} 4-step sagas split across worker processes sharing one "
        "database (same machine), sagas per second"
    )
    if why_not:
        print(f"   skipped: server unreachable ({why_not})")
    else:
        print(
            table(
                ["processes", "store", "sagas/s", "rounds", "connections"],
                [
                    [
                        str(r.processes),
                        "by URL" if r.path == "url" else "object",
                        f"{r.per_s:.0f}",
                        " ".join(f"{x:.0f}" for x in r.rounds),
                        str(r.most_connections) if r.processes == 1 else "-",
                    ]
                    for r in pg
                ],
            )
        )
        print(
            f"   connections: the most one process held while its {POSTGRES_SAGAS} runs went on"
            " (a writer and at most pool_size = 4 readers)"
        )
    print()

    observe_rounds = min(args.rounds, 7)  # each round of the slowest adapter takes a while
    observed = asyncio.run(bench_observe(args.sagas, observe_rounds))
    print(
        f"6. observability: {args.sagas} concurrent 4-step chains per round (in memory), median "
        f"of {observe_rounds} rotating rounds, CPU time: observers off, each adapter, all three"
    )
    print(
        table(
            ["observers", "µs/saga", "overhead µs/step"],
            [
                [o.config, f"{o.us_per_saga:.2f}", f"{o.overhead_us_per_step:+.2f}"]
                for o in observed
            ],
        )
    )
    print(
        "   overhead per step = (observed - none) / 4, run events included; spans to a "
        "dropping exporter, JSON logs to os.devnull"
    )
    print()

    why_not_rabbit = rabbitmq_reachable()
    sent = None if why_not_rabbit else bench_messaging(MESSAGING_SAGAS, 1 if args.quick else 3)
    print(
        f"7. messaging: {MESSAGING_SAGAS} concurrent 4-step sagas on SQLite, one message per "
        "step, ctx.emit -> commit -> optimistic publish to RabbitMQ (confirms) -> marked sent, "
        "messages per second"
    )
    if sent is None:
        print(f"   skipped: RabbitMQ unreachable ({why_not_rabbit})")
    else:
        print(
            table(
                ["scenario", "messages/s", "rounds"],
                [
                    [
                        "raw aio-pika publish with confirms",
                        f"{sent.raw_per_s:.0f}",
                        " ".join(f"{x:.0f}" for x in sent.raw_rounds),
                    ],
                    [
                        "statesaga: emit, commit, optimistic publish",
                        f"{sent.engine_per_s:.0f}",
                        " ".join(f"{x:.0f}" for x in sent.engine_rounds),
                    ],
                    ["statesaga: emit and commit, no broker", f"{sent.commit_only_per_s:.0f}", ""],
                ],
            )
        )
        print(
            f"   ratio to raw aio-pika: {sent.ratio:.2f}x   fallbacks to the relay: "
            f"{sent.fallback} of {sent.messages * sent.rounds}"
        )
    print()

    inboxed = [] if why_not else bench_inbox(INBOX_MESSAGES, 1 if args.quick else 3)
    print(
        f"8. consumer inbox on PostgreSQL: {INBOX_MESSAGES} messages, handler = one insert, "
        "through the inbox (message id recorded in the handler's transaction) and without it"
    )
    if why_not:
        print(f"   skipped: server unreachable ({why_not})")
    else:
        print(
            table(
                ["workers", "inbox msg/s", "plain msg/s", "plain / inbox"],
                [
                    [
                        str(r.concurrency),
                        f"{r.inbox_per_s:.0f}",
                        f"{r.plain_per_s:.0f}",
                        f"{r.ratio:.2f}x",
                    ]
                    for r in inboxed
                ],
            )
        )
    print()

    imported = bench_imports(7 if args.quick else 15, IMPORT_GOAL)
    print(
        "9. import time: `import asyncio` and `import statesaga`, each timed inside a fresh "
        f"interpreter (start-up excluded, bytecode cached), {imported.rounds} alternating "
        "rounds: medians in milliseconds, and the median of the rounds' own ratios"
    )
    print(
        table(
            ["clock", "asyncio ms", "statesaga ms", "ratio", "rounds' ratios", "goal", "result"],
            [
                [
                    "CPU time" if t.clock == "cpu" else "wall clock",
                    f"{t.asyncio_ms:.1f}",
                    f"{t.statesaga_ms:.1f}",
                    f"{t.ratio:.2f}x",
                    f"{min(t.ratio_rounds):.2f}x..{max(t.ratio_rounds):.2f}x",
                    f"<= {imported.goal:.1f}x" if t is imported.cpu else "-",
                    verdict(imported.passed if t is imported.cpu else None),
                ]
                for t in (imported.cpu, imported.wall)
            ],
        )
    )
    print(
        "   statesaga imports asyncio itself: the ratio is its whole cost against asyncio's; "
        "the goal is checked on CPU time, which other load on the machine does not inflate"
    )
    print()

    many, latencies = _waits(args.quick, why_not)
    pages = _ui(why_not, args.quick)
    explored = _explore()
    checks = [r.passed for r in runtime] + [c.passed for c in compiles] + [durable.passed]
    checks += [m.first_due_s <= WAIT_START_GOAL_S for m in many]
    checks += [max(m.late_ms) <= WAIT_LATE_GOAL_MS for m in many if m.late_ms]
    checks += [lat.median <= SIGNAL_GOAL_MS for lat in latencies if "SQLite" not in lat.where]
    checks.append(alone.passed)
    checks += [p.passed for p in pages]
    checks += [e.passed for e in explored if e.passed is not None]
    if beside is not None:
        checks.append(beside.passed)
    checks.append(imported.passed)
    checks += [d[1] < DIAGRAM_GOAL_MS for d in (drawn, drawn_chain) if d is not None]
    failed = [p for p in checks if p is False]
    print(f"goals: {'all met' if not failed else f'{len(failed)} not met'}")

    if args.json:
        report = {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": sys.platform,
            "machine": platform.machine(),
            "cpus": cpus,
            "quick": args.quick,
            "runtime": [asdict(r) for r in runtime],
            "compile": [asdict(c) for c in compiles],
            "durable": asdict(durable),
            "one_at_a_time": asdict(alone),
            "dbos": None if beside is None else asdict(beside),
            "postgres": [asdict(r) for r in pg],
            "messaging": None if sent is None else {**asdict(sent), "ratio": sent.ratio},
            "observe": [asdict(o) for o in observed],
            "inbox": [{**asdict(r), "ratio": r.ratio} for r in inboxed],
            "imports": asdict(imported),
            "waits": [asdict(m) for m in many],
            "signal_latency_ms": [asdict(lat) for lat in latencies],
            "ui_pages_ms": [asdict(p) for p in pages],
            "explore": [asdict(e) for e in explored],
            "diagram_ms": None if drawn is None else {"dot_text": drawn[0], "svg": drawn[1]},
            "diagram_chain_ms": (
                None if drawn_chain is None else {"dot_text": drawn_chain[0], "svg": drawn_chain[1]}
            ),
            "goals_met": not failed,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


def _waits(quick: bool, why_not_pg: str | None) -> tuple[list[ManyWaiting], list[Latency]]:
    """Section 10, printed; what it measured."""
    counts = (WAITING_RUNS[0], 2000) if quick else WAITING_RUNS
    gc.collect()
    many = asyncio.run(bench_many_waiting(counts, WAITS_DUE))
    print(
        "10a. waiting runs on SQLite: a `statesaga worker` process over 100, then "
        f"{counts[-1]:,} runs parked at a wait; {WAITS_DUE} of them fall due while it runs"
    )
    print(
        table(
            [
                "waiting runs",
                "worker RSS MB",
                "start -> due wait ended",
                "timeouts late p50",
                "p99",
                "max",
                "goal",
            ],
            [
                [
                    f"{m.waiting:,}",
                    f"{m.rss_mb:.1f}",
                    f"{m.first_due_s:.2f} s",
                    f"{statistics.median(m.late_ms):.0f} ms",
                    f"{sorted(m.late_ms)[int(0.99 * (len(m.late_ms) - 1))]:.0f} ms",
                    f"{max(m.late_ms):.0f} ms",
                    verdict(
                        m.first_due_s <= WAIT_START_GOAL_S and max(m.late_ms) <= WAIT_LATE_GOAL_MS
                    ),
                ]
                for m in many
            ],
        )
    )
    print(
        f"   goals: started and a due wait ended within {WAIT_START_GOAL_S:.0f} s; every timeout "
        f"fired within {WAIT_LATE_GOAL_MS / 1000:.0f} s of its due time; RSS flat as runs grow"
    )
    print()
    schema = f"bench_waits_{os.getpid()}"
    pg = None if why_not_pg else f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    try:
        latencies = asyncio.run(bench_latency(pg, 10 if quick else SIGNAL_SAMPLES))
    finally:
        if pg is not None:
            _drop_schema(schema)
    print("10b. signal -> the step after the wait starts, milliseconds")
    print(
        table(
            ["where", "median", "p90", "goal"],
            [
                [
                    lat.where,
                    f"{lat.median:.1f}",
                    f"{lat.p90:.1f}",
                    "within the poll" if "SQLite" in lat.where else f"<= {SIGNAL_GOAL_MS:.0f}",
                ]
                for lat in latencies
            ],
        )
    )
    if why_not_pg:
        print(f"   PostgreSQL skipped: server unreachable ({why_not_pg})")
    print()
    return many, latencies


def _ui(why_not_pg: str | None, quick: bool) -> list[PageTiming]:
    """Section 11, printed; what it measured."""
    schema = f"bench_ui_{os.getpid()}"
    pg = None if why_not_pg else f"{PG_URL}{'&' if '?' in PG_URL else '?'}schema={schema}"
    try:
        pages = bench_ui(pg, quick)
    finally:
        if pg is not None:
            _drop_schema(schema)
    print(
        "11. statesaga ui on 100,000 runs: each page through the ASGI app in process (TestClient), "
        "request to last byte, milliseconds; baseline: the store's reads of the runs page alone"
    )
    print(
        table(
            ["store", "page", "median", "p90", "baseline", "goal", "result"],
            [
                [
                    p.backend,
                    p.page,
                    f"{p.median_ms:.1f}",
                    f"{p.p90_ms:.1f}",
                    "-" if p.baseline_ms is None else f"{p.baseline_ms:.1f}",
                    f"< {p.goal_ms:.0f}",
                    verdict(p.passed),
                ]
                for p in pages
            ],
        )
    )
    if why_not_pg:
        print(f"   PostgreSQL skipped: server unreachable ({why_not_pg})")
    print()
    return pages


def _explore() -> list[ExploreTiming]:
    """Section 12, printed; what it measured."""
    explored = bench_explore()
    print(
        "12. explore: the default failure space (faults and crash points) run in memory; "
        "baseline: one plain in-memory run of the same saga"
    )
    print(
        table(
            ["saga", "scenarios", "total", "per scenario", "plain run", "ratio", "goal", "result"],
            [
                [
                    e.saga,
                    str(e.scenarios),
                    f"{e.total_s:.2f} s",
                    f"{e.per_scenario_ms:.2f} ms",
                    f"{e.plain_run_ms:.3f} ms",
                    f"{e.ratio:.1f}x",
                    "-" if e.goal_s is None else f"<= {e.goal_s:.0f} s",
                    verdict(e.passed),
                ]
                for e in explored
            ],
        )
    )
    print()
    return explored


def _drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


if __name__ == "__main__":
    sys.exit(main())
