"""Runs started from a script record a saga reference another process can import."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from statesaga import Saga, SagaStatus, Step
from statesaga.context import Context
from statesaga.durable import SagaNotImportable
from statesaga.loader import load_saga, saga_reference, unimportable
from statesaga.store import MemoryStore
from statesaga.worker import Worker

ROOT = Path(__file__).resolve().parent.parent

# A saga in a script: the first run dies (os._exit) in its second step, as a killed process.
SCRIPT = """
import asyncio, os, sys
from statesaga import Saga, Step

async def reserve(ctx):
    return {"reserved": True}

async def charge(ctx):
    if os.environ.get("DIE"):
        os._exit(3)
    with open(os.environ["LEDGER"], "a") as ledger:
        ledger.write(ctx.saga_id + "\\n")
    return {}

class Order(Saga):
    steps = (Step("reserve", reserve), Step("charge", charge))

if __name__ == "__main__":
    asyncio.run(Order().execute(store=sys.argv[1], saga_id="run-1"))
"""


def python(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def stored_reference(db: Path) -> str:
    import sqlite3

    with sqlite3.connect(db) as con:
        return str(con.execute("SELECT saga_path FROM statesaga_runs").fetchone()[0])


@pytest.mark.parametrize("how", ["script", "module"])
def test_a_run_started_from_a_script_is_resumed_by_another_process(
    how: str, tmp_path: Path
) -> None:
    """`python app/order.py` stores the file, `python -m app.order` the module; either way
    `statesaga runs resume --all`, run from elsewhere, finishes the run."""
    app = tmp_path / "app"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "order.py").write_text(textwrap.dedent(SCRIPT))
    db, ledger = tmp_path / "runs.db", tmp_path / "ledger"
    env = {"LEDGER": str(ledger), "STATESAGA_LEASE_SECONDS": "0.2"}
    target = ["app/order.py"] if how == "script" else ["-m", "app.order"]
    died = python(*target, f"sqlite:///{db}", cwd=tmp_path, env={**env, "DIE": "1"})
    assert died.returncode == 3, died.stderr
    expected = f"{app / 'order.py'}:Order" if how == "script" else "app.order:Order"
    assert stored_reference(db) == expected
    # From the project folder for a script (its path is absolute); from the folder the module
    # is found in for a module, as `python -m` resolves it.
    where = ROOT if how == "script" else tmp_path
    done = python(
        "-m",
        "statesaga.cli",
        "runs",
        "resume",
        "--all",
        "--wait",
        "--store",
        f"sqlite:///{db}",
        cwd=where,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "run-1: completed" in done.stdout
    assert ledger.read_text().split() == ["run-1"]


def test_the_reference_of_a_class_in_a_function_says_why_it_cannot_be_imported() -> None:
    """A class defined in a function has no reference another process can use, and says so."""

    class Local(Saga):
        steps = (Step("a", lambda_free),)

    reference = saga_reference(Local)
    assert "<locals>" in reference
    assert unimportable(reference) == "the class is defined inside a function"


async def lambda_free(ctx: Context) -> None:
    return None


class Module(Saga):
    steps = (Step("a", lambda_free),)


def test_a_module_level_class_is_referenced_by_its_module() -> None:
    """A saga in an importable module is stored as module:Class, and loads back."""
    reference = saga_reference(Module)
    assert reference == f"{__name__}:Module"
    assert unimportable(reference) is None
    assert load_saga(reference) is Module


def test_a_missing_file_or_module_is_named_as_the_reason(tmp_path: Path) -> None:
    """A reference to a file or a module that is not here says which."""
    gone = tmp_path / "gone.py"
    assert unimportable(f"{gone}:Order") == f"{gone} does not exist here"
    assert unimportable("no_such_module_here:Order") == "no module named 'no_such_module_here' here"
    assert "interactive session" in (unimportable("__main__:Order") or "")


def test_a_script_is_loaded_once_however_many_runs_resume_it(tmp_path: Path) -> None:
    """Loading one file reference twice gives the same class (a worker resuming many runs of
    a script must not re-execute it for each)."""
    script = tmp_path / "order.py"
    script.write_text(textwrap.dedent(SCRIPT))
    assert load_saga(f"{script}:Order") is load_saga(f"{script}:Order")


def test_starting_a_run_of_a_saga_no_other_process_can_import_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Durable runs of a saga defined in a function are started, with one warning saying why
    they cannot be resumed elsewhere and what to do."""
    import asyncio

    class Hidden(Saga):
        steps = (Step("a", lambda_free),)

    async def twice() -> None:
        store = MemoryStore()
        for _ in range(2):
            assert (await Hidden().execute(store=store)).status is SagaStatus.COMPLETED

    with caplog.at_level(logging.WARNING, logger="statesaga"):
        asyncio.run(twice())
    warnings = [r.getMessage() for r in caplog.records if "cannot import" in r.getMessage()]
    assert len(warnings) == 1
    assert "defined inside a function" in warnings[0]
    assert "saga=Hidden" in warnings[0]


async def test_a_worker_reports_a_run_it_cannot_import_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A worker logs a run whose saga cannot be imported once, not on every poll, and the
    error says how to fix it."""
    store = MemoryStore()
    hidden = await Module().execute(store=store, saga_id="lost")
    assert hidden.status is SagaStatus.COMPLETED
    import attrs

    store._runs["lost"] = attrs.evolve(
        store._runs["lost"],
        status="running",
        saga_path="__main__:Gone",
        lease_owner=None,
        lease_expires=None,
    )
    worker = Worker(store)
    with caplog.at_level(logging.ERROR, logger="statesaga.worker"):
        for _ in range(3):
            outcomes = await worker.run_once()
    errors = [r.getMessage() for r in caplog.records if "lost" in r.getMessage()]
    assert len(errors) == 1
    assert "pass the class" in errors[0]
    assert "interactive session" in errors[0]
    assert outcomes == []  # skipped until it is worth trying again
    first = (await Worker(store).run_once())[0]
    assert isinstance(first.error, SagaNotImportable)
    assert first.error.reference == "__main__:Gone"


def test_a_class_in_a_package_main_is_flagged() -> None:
    """A saga in a package's __main__.py is flagged: importing it would run the program."""
    why = unimportable("shop.__main__:Order")
    assert why is not None
    assert "__main__.py" in why


def test_a_class_the_loader_read_from_a_file_is_referenced_by_that_file(tmp_path: Path) -> None:
    """A saga loaded from a file (a worker resuming a script's run) keeps the file as its
    reference, so runs it starts are resumable too."""
    script = tmp_path / "order.py"
    script.write_text(textwrap.dedent(SCRIPT))
    saga = load_saga(f"{script}:Order")
    assert saga_reference(saga) == f"{script}:Order"


def test_checking_a_reference_leaves_sys_path_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Looking for a module from the current folder does not add that folder to sys.path."""
    (tmp_path / "here_only.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    path = list(sys.path)
    assert unimportable("here_only:Order") is None
    assert sys.path == path


STARTS_AND_RETURNS = """
import asyncio, sys
from statesaga import Saga, Step

async def slow(ctx):
    await asyncio.sleep(30)
    return {}

class Slow(Saga):
    steps = (Step("slow", slow),)

async def main():
    for n in range(1, int(sys.argv[2]) + 1):
        run = await Slow().start(store=sys.argv[1], saga_id=f"left-{n}")
        print("started", run.saga_id, flush=True)

asyncio.run(main())
print("ended", flush=True)
"""


@pytest.fixture(params=["sqlite", "postgres"])
def script_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new store of each durable backend, for a script to use."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'runs.db'}"
        return
    from test_store_postgres import URL, drop_schema, require_server

    require_server()
    schema = f"script_{os.getpid()}_{tmp_path.name[-6:]}".replace("-", "_")
    try:
        yield f"{URL}{'&' if '?' in URL else '?'}schema={schema}"
    finally:
        drop_schema(schema)


def stored(url: str, *run_ids: str) -> list[tuple[str, str | None]]:
    """Each run's status and lease owner, read back from the store at ``url``."""
    import asyncio

    from statesaga.store import store_from_url

    async def read() -> list[tuple[str, str | None]]:
        async with store_from_url(url) as store:
            runs = [(await store.load(run_id)).run for run_id in run_ids]
            return [(run.status, run.lease_owner) for run in runs]

    return asyncio.run(read())


@pytest.mark.parametrize("runs", [1, 4])
def test_a_script_that_starts_runs_and_returns_ends_and_lets_them_go(
    script_store: str, runs: int, tmp_path: Path
) -> None:
    """``asyncio.run`` ending cancels the runs' tasks: the process exits at once, quietly, and
    each run is left unfinished with no lease, for the next worker (on PostgreSQL the leases
    used to be let go through a writer task already cancelled, and the process hung; with
    several runs, their last writes met on one connection and the process hung or failed)."""
    (tmp_path / "starts.py").write_text(STARTS_AND_RETURNS)
    done = python("starts.py", script_store, str(runs), cwd=tmp_path, env={})
    assert done.returncode == 0, done.stderr
    started = [word for n in range(1, runs + 1) for word in ("started", f"left-{n}")]
    assert done.stdout.split() == [*started, "ended"]
    assert "Traceback" not in done.stderr, done.stderr
    left = stored(script_store, *(f"left-{n}" for n in range(1, runs + 1)))
    assert [owner for _, owner in left] == [None] * runs


SHUTS_DOWN = """
import asyncio, sys
import statesaga
from statesaga import Saga, Step

async def slow(ctx):
    await asyncio.sleep(30)

class Slow(Saga):
    steps = (Step("slow", slow),)

async def main():
    run = await Slow().start(store=sys.argv[1], saga_id="stopped-1")
    await asyncio.sleep(0.3)  # its step is running
    await statesaga.shutdown()
    try:
        await run.result()
    except statesaga.StatesagaError as error:
        print(type(error).__name__, error, flush=True)

asyncio.run(main())
"""


def test_shutdown_stops_the_runs_in_flight_and_lets_them_go(
    script_store: str, tmp_path: Path
) -> None:
    """``shutdown()`` with a run still going stops it first: its handle says so (``RunPaused``),
    nothing fails on a closed store or warns of an exception never retrieved, and the run is
    left unfinished with no lease, for a worker to go on with at once."""
    (tmp_path / "shuts.py").write_text(SHUTS_DOWN)
    done = python("shuts.py", script_store, cwd=tmp_path, env={})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("RunPaused run stopped-1 was stopped by statesaga.shutdown()")
    assert "never retrieved" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert stored(script_store, "stopped-1") == [("running", None)]
