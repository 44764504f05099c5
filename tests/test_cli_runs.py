from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
from helpers import run_cli

from statesaga import Saga, Step
from statesaga.context import Context
from statesaga.store.sqlite import SQLiteStore

# Commands run as processes: on the default Python only in CI (see .ci/run).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


async def act(ctx: Context) -> dict[str, str]:
    return {"ok": ctx.step}


async def boom(ctx: Context) -> None:
    raise RuntimeError("card declined")


class Cli(Saga):
    steps = (Step("reserve", act, compensate=act), Step("charge", boom))


class CliOk(Saga):
    steps = (Step("reserve", act),)


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=env)


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'runs.db'}"

    async def fill() -> None:
        store = SQLiteStore(tmp_path / "runs.db")
        async with store:
            await Cli(order="A").execute(store=store, saga_id="run-a")
            await CliOk(order="B").execute(store=store, saga_id="run-b")

    asyncio.run(fill())
    return url


def test_runs_list_shows_every_run(db: str) -> None:
    """`runs list` prints one row per run with its status."""
    done = cli("runs", "list", "--store", db)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["RUN", "SAGA", "STATUS"]
    assert any(line.startswith("run-a") and "compensated" in line for line in lines)
    assert any(line.startswith("run-b") and "completed" in line for line in lines)


def test_runs_list_filters(db: str) -> None:
    """--status and --saga narrow the list; STATESAGA_STORE supplies the store."""
    done = cli("runs", "list", "--status", "completed", env={"STATESAGA_STORE": db})
    assert "run-b" in done.stdout
    assert "run-a" not in done.stdout
    done = cli("runs", "list", "--saga", "Cli", "--store", db)
    assert "run-a" in done.stdout
    assert "run-b" not in done.stdout


def test_runs_show_prints_the_history_table(db: str) -> None:
    """`runs show` prints the run, its steps and every transition."""
    done = cli("runs", "show", "run-a", "--store", db)
    assert done.returncode == 0, done.stderr
    assert "status    compensated" in done.stdout
    assert "failed    charge: RuntimeError: card declined" in done.stdout
    assert "charge.fail" in done.stdout
    assert "reserve.compensating -> reserve.compensated" in done.stdout


def test_runs_show_lists_steps_in_the_order_the_run_reached_them(db: str) -> None:
    """Steps come in the run's order (reserve, then charge), not by name."""
    done = cli("runs", "show", "run-a", "--store", db)
    lines = done.stdout.splitlines()
    table = lines[next(i for i, line in enumerate(lines) if line.startswith("STEP")) + 1 :]
    steps = [line.split()[0] for line in table[:2]]
    assert steps == ["reserve", "charge"], done.stdout


def test_runs_resume_of_a_finished_run_reports_it(db: str) -> None:
    """Resuming a finished run reports its status and runs nothing."""
    done = cli("runs", "resume", "run-b", "--store", db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "run-b: completed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("runs", "show", "nope"), "no run 'nope'"),
        (("runs", "resume", "nope"), "no run 'nope'"),
    ],
)
def test_unknown_run_is_one_line_error(db: str, args: tuple[str, ...], message: str) -> None:
    """An unknown run id is a one-line error with a non-zero exit."""
    done = cli(*args, "--store", db)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_resume_needs_an_id_or_all(db: str) -> None:
    """`runs resume` wants exactly one of RUN_ID and --all."""
    assert cli("runs", "resume", "--store", db).returncode == 2
    assert cli("runs", "resume", "run-a", "--all", "--store", db).returncode == 2


def test_unknown_scheme_lists_the_supported_ones() -> None:
    """A store URL with an unknown scheme names the schemes statesaga knows."""
    done = cli("runs", "list", "--store", "mongodb://u:secret@h/db")
    assert done.returncode == 1
    assert "sqlite://" in done.stderr
    assert "secret" not in done.stderr


def test_unwritable_sqlite_path_says_so(tmp_path: Path) -> None:
    """A SQLite file in a folder that cannot exist is reported with its path."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    done = cli("runs", "list", "--store", f"sqlite:///{blocker / 'runs.db'}")
    assert done.returncode == 1
    assert str(blocker) in done.stderr
    assert "Traceback" not in done.stderr


def test_worker_once_resumes_nothing_quietly(db: str) -> None:
    """`statesaga worker --once` exits cleanly when nothing is unfinished."""
    done = cli("worker", "--once", "--store", db)
    assert done.returncode == 0, done.stderr
    assert "worker on" in done.stdout


def test_runs_list_says_when_it_shows_only_the_newest(db: str) -> None:
    """A list cut at --limit says so and how to see more; one that is not cut does not."""
    cut = cli("runs", "list", "--limit", "1", "--store", db)
    assert cut.returncode == 0, cut.stderr
    assert len([line for line in cut.stdout.splitlines() if line.startswith("run-")]) == 1
    assert "(the newest 1 shown; --limit shows more)" in cut.stdout
    assert "--limit shows more" not in cli("runs", "list", "--limit", "2", "--store", db).stdout


def test_runs_list_with_filters_matching_nothing_says_what_was_asked(db: str) -> None:
    """No match for a filter is not reported as an empty store."""
    done = cli("runs", "list", "--saga", "cli", "--status", "failed", "--store", db)
    assert done.returncode == 0, done.stderr
    assert "no runs with status 'failed' of saga 'cli' (names match exactly) in" in done.stdout


@pytest.mark.parametrize("command", [("runs", "list"), ("worker", "--once"), ("outbox", "list")])
def test_an_empty_store_url_is_a_usage_error(command: tuple[str, ...]) -> None:
    """`--store ""` names no store: refused, not taken for the default file."""
    done = cli(*command, "--store", "")
    assert done.returncode == 2
    assert "names no store" in done.stderr


def test_runs_show_marks_a_lease_that_ran_out(tmp_path: Path) -> None:
    """A run left by a driver that died shows its lease as expired: any worker may take it."""
    from tests.crash.cluster import new_run

    url = f"sqlite:///{tmp_path / 'runs.db'}"

    async def fill() -> None:
        async with SQLiteStore(tmp_path / "runs.db") as store:
            await store.create(new_run(CliOk, "dead-1", {}, owner="gone:1:x", expires=1.0))
            far = time.time() + 3600
            await store.create(new_run(CliOk, "live-1", {}, owner="here:2:y", expires=far))

    asyncio.run(fill())
    dead = cli("runs", "show", "dead-1", "--store", url)
    assert "lease     gone:1:x until 1970-01-01 00:00:01 UTC (expired: any worker" in dead.stdout
    live = cli("runs", "show", "live-1", "--store", url)
    assert "lease     here:2:y until " in live.stdout
    assert "expired" not in live.stdout
