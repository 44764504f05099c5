"""`statesaga worker` and `runs resume --all` say what they wait for, and can wait."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# Commands run as processes: on the default Python only in CI (see .ci/run).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

# Runs whose process dies in step "slow"; resumed, "slow" waits for the file GO (if named).
SAGAS = """
import asyncio, os, sys
from pathlib import Path
from statesaga import Saga, Step

async def first(ctx):
    return {}

async def slow(ctx):
    if os.environ.get("DIE"):
        os._exit(3)
    Path(f"started-{ctx.saga_id}").write_text("")
    while os.environ.get("GO") and not Path(os.environ["GO"]).exists():
        await asyncio.sleep(0.02)
    return {}

class Slow(Saga):
    steps = (Step("first", first), Step("slow", slow))

async def strand(url, count):
    for i in range(count):
        await Slow().execute(store=url, saga_id=f"run-{i}")

if __name__ == "__main__":
    asyncio.run(strand(sys.argv[1], int(sys.argv[2])))
"""


def stranded(folder: Path, count: int, lease: float) -> str:
    """A store in ``folder`` whose ``count`` runs were left in step "slow" by a process that
    died, each with ``lease`` seconds of lease left."""
    (folder / "sagas.py").write_text(textwrap.dedent(SAGAS))
    url = f"sqlite:///{folder / 'runs.db'}"
    for i in range(count):
        # One process per run: each dies at its first run's "slow" step.
        code = f"import asyncio, sagas; asyncio.run(sagas.Slow().execute(store={url!r}, "
        code += f"saga_id='run-{i}'))"
        died = subprocess.run(
            [sys.executable, "-c", code],
            cwd=folder,
            env={**env(folder), "DIE": "1", "STATESAGA_LEASE_SECONDS": str(lease)},
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert died.returncode == 3, died.stderr
    return url


def env(folder: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{folder}", **extra}


def statesaga(folder: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "statesaga.cli", *args],
        cwd=folder,
        env=env(folder, **extra),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("command", [("runs", "resume", "--all"), ("worker", "--once")])
def test_runs_leased_by_a_dead_worker_are_counted_with_their_expiry(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """With nothing free to resume, the command says how many runs are leased, to whom and
    until when, and points to --wait, instead of "nothing to resume"."""
    url = stranded(tmp_path, 2, lease=300)
    done = statesaga(tmp_path, *command, "--store", url)
    assert done.returncode == 0, done.stderr
    assert "2 unfinished runs leased by other workers until" in done.stdout
    assert "UTC at the latest" in done.stdout
    assert "--wait" in done.stdout
    assert "no unfinished runs" not in done.stdout
    assert "nothing to recover" not in done.stdout


@pytest.mark.parametrize("command", [("runs", "resume", "--all"), ("worker", "--once")])
def test_wait_takes_runs_over_when_their_leases_run_out(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    """--wait says what it waits for, then drives each run once its lease has run out."""
    url = stranded(tmp_path, 2, lease=3)
    done = statesaga(tmp_path, *command, "--wait", "--store", url)
    assert done.returncode == 0, done.stderr
    # Both leases, or the second alone if the first ran out on a slow machine.
    assert re.search(r"waiting for [12] leases? to run out", done.stdout), done.stdout
    assert "run-0: completed" in done.stdout
    assert "run-1: completed" in done.stdout


def test_wait_needs_once_on_a_worker(tmp_path: Path) -> None:
    """--wait is a usage error where it means nothing."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    assert statesaga(tmp_path, "worker", "--wait", "--store", url).returncode == 2


def test_one_leased_run_is_an_error_saying_until_when_and_how_to_wait(tmp_path: Path) -> None:
    """Resuming one run a dead process still leases names the owner, the expiry as a UTC
    time, and --wait."""
    url = stranded(tmp_path, 1, lease=300)
    done = statesaga(tmp_path, "runs", "resume", "run-0", "--store", url)
    assert done.returncode == 1
    assert re.search(r"leased to \S+ until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", done.stderr)
    assert "epoch" not in done.stderr
    assert "runs resume RUN_ID --wait" in done.stderr


def test_wait_takes_one_run_over_when_its_lease_runs_out(tmp_path: Path) -> None:
    """`runs resume RUN_ID --wait` says what it waits for, then drives the run."""
    url = stranded(tmp_path, 1, lease=2)
    done = statesaga(tmp_path, "runs", "resume", "run-0", "--wait", "--store", url)
    assert done.returncode == 0, done.stderr
    assert "waiting for the lease" in done.stdout
    assert "on run-0 to run out" in done.stdout
    assert "run-0: completed" in done.stdout


def test_first_ctrl_c_with_nothing_in_hand_says_so(tmp_path: Path) -> None:
    """A worker with no run in hand says so on the first Ctrl-C and exits 0."""
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    worker = start_worker(tmp_path, url, go=tmp_path / "go")
    try:
        assert worker.stdout is not None
        assert "worker on" in worker.stdout.readline()
        time.sleep(0.5)
        worker.send_signal(signal.SIGINT)
        _out, err = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert "stopping: no run in hand" in err
    assert "0 runs" not in err


def start_worker(folder: Path, url: str, go: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "statesaga.cli", "worker", "--concurrency", "1", "--store", url],
        cwd=folder,
        env=env(folder, GO=str(go)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)


def test_first_ctrl_c_says_what_the_worker_waits_for_and_takes_no_new_run(
    tmp_path: Path,
) -> None:
    """The first SIGINT names the run in hand and the second Ctrl-C; the worker finishes that
    run, takes no other, and exits 0."""
    url = stranded(tmp_path, 2, lease=0.2)
    time.sleep(0.3)
    worker = start_worker(tmp_path, url, go=tmp_path / "go")
    try:
        wait_for(tmp_path / "started-run-0")
        worker.send_signal(signal.SIGINT)
        time.sleep(0.5)
        (tmp_path / "go").write_text("")
        _out, err = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert "waiting for 1 run in hand to finish their running steps (at most 30 s) (run-0)" in err
    assert "Press Ctrl-C again to stop at once: it stays resumable." in err
    assert not (tmp_path / "started-run-1").exists()
    listed = statesaga(tmp_path, "runs", "list", "--store", url).stdout
    assert [line.split()[2] for line in listed.splitlines()[1:]] in (
        ["running", "completed"],
        ["completed", "running"],
    )


def test_second_ctrl_c_stops_at_once_and_leaves_the_run_resumable(tmp_path: Path) -> None:
    """A second SIGINT stops the worker without waiting; its run is free for another worker."""
    url = stranded(tmp_path, 1, lease=0.2)
    time.sleep(0.3)
    worker = start_worker(tmp_path, url, go=tmp_path / "never")
    try:
        wait_for(tmp_path / "started-run-0")
        worker.send_signal(signal.SIGINT)
        time.sleep(0.3)
        worker.send_signal(signal.SIGINT)
        _out, err = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert "stopping now: 1 run left for any worker to resume" in err
    done = statesaga(tmp_path, "runs", "resume", "--all", "--store", url, GO="")
    assert "run-0: completed" in done.stdout, done.stdout + done.stderr


def test_ctrl_c_ends_a_wait_for_leases_at_once(tmp_path: Path) -> None:
    """`worker --once --wait` stops waiting on the first Ctrl-C and says what stays leased."""
    url = stranded(tmp_path, 1, lease=300)
    worker = subprocess.Popen(
        [sys.executable, "-m", "statesaga.cli", "worker", "--once", "--wait", "--store", url],
        cwd=tmp_path,
        env=env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None
        assert "waiting for 1 lease to run out" in worker.stdout.readline() + (
            worker.stdout.readline()
        )
        started = time.monotonic()
        worker.send_signal(signal.SIGINT)
        out, _ = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert time.monotonic() - started < 10
    assert worker.returncode == 0
    assert "1 unfinished run leased by other workers until" in out


@pytest.mark.parametrize(
    ("broker", "message"),
    [
        ("kafka://u:s3cr3t@h:9092", "unknown broker URL scheme 'kafka'"),
        ("nats://h:4222?shards=0", "shards='0'"),
        ("", "an empty broker URL names no broker"),
    ],
)
@pytest.mark.parametrize(
    "command", [("worker",), ("worker", "--once"), ("relay", "--once"), ("runs", "resume", "--all")]
)
def test_a_bad_broker_url_is_refused_at_startup(
    command: tuple[str, ...], broker: str, message: str, tmp_path: Path
) -> None:
    """A --broker URL naming no usable broker is a usage error (exit code 2) before any run is
    looked at, its password hidden, in every command that takes one."""
    url = stranded(tmp_path, 1, lease=0.2)
    time.sleep(0.3)
    done = subprocess.run(
        [sys.executable, "-m", "statesaga.cli", *command, "--store", url, "--broker", broker],
        cwd=tmp_path,
        env=env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
        timeout=30,  # a worker that took the URL would run until killed
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr
    assert "Invalid value for '--broker'" in done.stderr
    assert "s3cr3t" not in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert "running" in statesaga(tmp_path, "runs", "list", "--store", url).stdout


def make_unresumable(folder: Path, how: str) -> None:
    """Make the runs of ``sagas.Slow`` in ``folder`` impossible to resume: their module gone,
    or their saga's steps changed."""
    if how == "not importable":
        (folder / "sagas.py").unlink()
    else:
        changed = SAGAS.replace('Step("slow", slow))', 'Step("slow", slow), Step("more", first))')
        (folder / "sagas.py").write_text(textwrap.dedent(changed))
    for cached in folder.glob("__pycache__/sagas*"):
        cached.unlink()


@pytest.mark.parametrize("how", ["not importable", "definition changed"])
def test_once_exits_1_when_a_run_it_found_was_not_resumed(how: str, tmp_path: Path) -> None:
    """`worker --once` exits 1, as `runs resume --all` does, when a run it found could not be
    resumed, naming it; the other runs are still driven."""
    url = stranded(tmp_path, 1, lease=0.2)
    make_unresumable(tmp_path, how)
    time.sleep(0.3)
    for command in (("worker", "--once"), ("runs", "resume", "--all")):
        done = statesaga(tmp_path, *command, "--store", url)
        assert done.returncode == 1, (command, done.stdout, done.stderr)
        assert "run-0: not resumed: " in done.stdout
        assert "Traceback" not in done.stderr


def test_once_exits_0_when_every_run_it_found_was_resumed(tmp_path: Path) -> None:
    """`worker --once` exits 0 once every run it found is resumed."""
    url = stranded(tmp_path, 2, lease=0.2)
    time.sleep(0.3)
    done = statesaga(tmp_path, "worker", "--once", "--store", url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "run-0: completed" in done.stdout
    assert "run-1: completed" in done.stdout


@pytest.mark.parametrize("command", [("worker", "--once"), ("runs", "resume", "--all")])
def test_why_a_run_was_not_resumed_is_told_once(command: tuple[str, ...], tmp_path: Path) -> None:
    """The reason a run could not be resumed is printed once: not logged, then printed again."""
    url = stranded(tmp_path, 1, lease=0.2)
    make_unresumable(tmp_path, "definition changed")
    time.sleep(0.3)
    done = statesaga(tmp_path, *command, "--store", url)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert output.count("resuming could run the wrong steps") == 1, output
    assert "run-0: not resumed: run run-0 of saga 'Slow' started with definition" in output


def test_the_exit_codes_are_in_the_help(tmp_path: Path) -> None:
    """`worker --help` says what exit codes 0, 1 and 2 mean."""
    text = statesaga(tmp_path, "worker", "--help").stdout
    assert "Exit codes:" in text
    assert "1  with --once, a run it found was not resumed" in text
    assert "2  usage error" in text


def test_the_stopping_text_counts_runs_in_the_right_number() -> None:
    """What the first Ctrl-C says is singular for one run in hand and plural for more."""
    from statesaga.cli.worker import stopping_text

    assert stopping_text([]) == "stopping: no run in hand"
    one = stopping_text(["r1"])
    assert "waiting for 1 run in hand to finish (r1)" in one
    assert one.endswith("Press Ctrl-C again to stop at once: it stays resumable.")
    two = stopping_text(["r1", "r2"])
    assert "waiting for 2 runs in hand to finish (r1, r2)" in two
    assert two.endswith("Press Ctrl-C again to stop at once: they stay resumable.")
    seven = stopping_text([f"r{i}" for i in range(7)])
    assert "7 runs in hand to finish (r0, r1, r2, r3, r4, ...)" in seven


def test_the_start_line_says_how_the_worker_runs(tmp_path: Path) -> None:
    """The first line names the store, concurrency, poll, lease and broker, no secret shown."""
    from click.testing import CliRunner

    from statesaga.cli import cli

    db = tmp_path / "runs.db"
    broker = "amqp://app:s3cret@127.0.0.1:5672/"
    result = CliRunner().invoke(
        cli,
        ["worker", "--once", "--store", f"sqlite:///{db}", "--poll", "0.5", "--broker", broker],
    )
    assert result.exit_code == 0, result.output
    first = result.output.splitlines()[0]
    assert first == (
        f"worker on sqlite:///{db} (concurrency 32, poll 0.5 s, lease 30 s, "
        "publishing to amqp://app:***@127.0.0.1:5672/)"
    )


@pytest.mark.parametrize("command", ["worker", "relay"])
def test_a_store_made_at_start_is_said_to_be_new(command: str, tmp_path: Path) -> None:
    """A worker or relay given a URL with no store behind it (a mistyped path) creates it, as
    runs do, and says so with what to check; one with a store there says nothing of it."""
    from click.testing import CliRunner

    from statesaga.cli import cli

    url = f"sqlite:///{tmp_path / 'typo.db'}"
    args = [command, "--once", "--store", url, "--broker", "memory://"]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 0, first.output
    assert (
        f"{command}: there was no statesaga store at {url} (no such file): created an empty "
        "one. If you meant an existing store, check the URL (its file path, or its ?schema=)"
    ) in first.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "no statesaga store" not in again.output


def test_a_postgres_schema_made_at_start_is_said_to_be_new() -> None:
    """The same for a PostgreSQL ``?schema=`` that names no schema yet."""
    from click.testing import CliRunner
    from test_store_postgres import URL, drop_schema, new_schema, require_server

    from statesaga.cli import cli

    require_server()
    schema = new_schema()
    try:
        url = f"{URL}?schema={schema}"
        result = CliRunner().invoke(cli, ["worker", "--once", "--store", url])
        assert result.exit_code == 0, result.output
        assert f"(schema {schema!r} does not exist): created an empty one" in result.output
    finally:
        drop_schema(schema)
