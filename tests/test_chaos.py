"""Chaos: four `statesaga worker`s and two `statesaga relay`s on PostgreSQL and RabbitMQ while
workers are SIGKILLed every 2 to 5 s, one is SIGTERMed, and the broker is cut. Every run
completes, no succeeded step runs again, every message is applied once in key order, and
runs are taken over within lease + poll (SIGKILL) or 1 s (SIGTERM).

Skipped unless asked for: `make chaos-ci` (500 runs, 15 s of chaos; 200 runs per throughput
measurement) or `make chaos` (2,000 runs, 60 s; 2,000 per measurement); see
tests/conftest.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs
import pytest
from _services import AMQP_URL, require
from test_store_postgres import URL, require_server

from tests.chaos import checks
from tests.chaos.cluster import LEASE_SECONDS, POLL
from tests.chaos.scenario import WATCH, Settings, chaos, harness, throughput

MODE = os.environ.get("STATESAGA_CHAOS", "ci")
SETTINGS = {
    "ci": Settings(runs=200, chaos_seconds=15.0, drain_seconds=30.0),
    "full": Settings(runs=2000, chaos_seconds=60.0, drain_seconds=180.0),
}[MODE if MODE in ("ci", "full") else "ci"]
#: The chaos itself: in the short version, runs enough to keep the workers busy (so that the
#: ones killed hold runs) for its 15 s.
CHAOS = SETTINGS if MODE == "full" else attrs.evolve(SETTINGS, runs=500)
TIMEOUT = 85 if MODE != "full" else 900
#: Taken over: another worker holds the run's lease within lease + poll after a SIGKILL, and
#: within 1 s of a SIGTERM. The look that finds it starts by then; taking it is that look's
#: listing and the lease's commit (TAKE), and the watcher sees it up to WATCH (and one query)
#: later. Busy workers are no excuse: a slot that frees is filled at once, and two workers
#: taking the same runs do not wait on each other (tests/test_store_postgres.py).
TAKE = 0.1
BOUNDS = {"kill": LEASE_SECONDS + POLL + TAKE + WATCH, "term": 1.0}
#: Then its next step starts: the worker that took it loads it, commits the step ahead and
#: calls it (which records the execution), on a loaded 2-core machine.
STARTING = 1.0
STEP_BOUNDS = {"kill": LEASE_SECONDS + POLL + STARTING, "term": 1.0 + STARTING}

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(TIMEOUT)]


def services() -> None:
    require_server()
    require(AMQP_URL, "RabbitMQ", "STATESAGA_TEST_AMQP")


def report(title: str, problems: list[str]) -> str:
    shown = "\n  ".join(problems[:25])
    more = f"\n  ... and {len(problems) - 25} more" if len(problems) > 25 else ""
    return f"{title}: {len(problems)} broken\n  {shown}{more}"


async def test_killed_workers_and_a_cut_broker_break_no_promise(tmp_path: Path) -> None:
    """Every run completes; no succeeded step runs again; every message is applied exactly
    once, in key order; runs are taken over within lease + poll after a SIGKILL, and within
    1 s after a SIGTERM."""
    services()
    async with harness(URL, AMQP_URL, tmp_path, workers=4) as h:
        interruptions = await chaos(h, CHAOS)
        observed = await h.observe()
        assert h.cluster is not None
        logs = h.cluster.logs()
        started = h.cluster.started
    kinds = [i.kind for i in interruptions]
    assert "term" in kinds, kinds

    def next_steps(observed: checks.Observed, i: checks.Interruption) -> dict[str, float]:
        return checks.takeovers(observed, i, interruptions)

    assert kinds.count("kill") >= 2, kinds
    for kind in ("kill", "term"):
        for what, measure in (("taken over", checks.leases_taken), ("next step", next_steps)):
            took = [
                t for i in interruptions if i.kind == kind for t in measure(observed, i).values()
            ]
            print(f"\n{kind} ({kinds.count(kind)}x), {what}: {checks.summary(took)}")
    repeats = len(observed.executions) - len(observed.statuses) * 3
    print(f"{len(observed.statuses)} runs, {repeats} step executions repeated after a SIGKILL")
    broken = {
        "runs not completed": checks.unfinished(observed),
        "steps run again": checks.steps_run_again(observed, interruptions),
        "messages not applied once in key order": checks.messages_not_once_in_order(observed),
        "takeovers late": checks.late_takeovers(observed, interruptions, BOUNDS, started=started),
        "next steps late": checks.late_takeovers(
            observed, interruptions, STEP_BOUNDS, next_steps, "next step started"
        ),
        "processes": h.problems,
    }
    failures = [report(title, problems) for title, problems in broken.items() if problems]
    timeline = "\n  ".join(
        f"{i.kind} pid {i.pid} at {i.at:.3f}, held {len(i.held)}" for i in interruptions
    )
    assert not failures, "\n".join([*failures, f"interruptions:\n  {timeline}", logs[-20000:]])


async def test_throughput_of_one_two_and_four_workers(tmp_path: Path) -> None:
    """Runs completed per second by 1, 2 and 4 workers, no chaos, the same saga and runs."""
    services()
    rates = {
        workers: await throughput(URL, AMQP_URL, tmp_path / str(workers), workers, SETTINGS)
        for workers in (1, 2, 4)
    }
    print(f"\n{SETTINGS.runs} runs of 3 steps (0-50 ms each), --concurrency 16, --poll {POLL}")
    print("| workers | runs/s | vs 1 worker |\n|---:|---:|---:|")
    for workers, rate in rates.items():
        print(f"| {workers} | {rate:.0f} | {rate / rates[1]:.2f}x |")
    assert all(rate > 0 for rate in rates.values())
