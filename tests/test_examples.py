"""Every example runs as a script and as a module, in memory and on SQLite, as documented."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import io
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

from statesaga import SagaResult, SagaStatus, Wait, WaitTimeoutError

# Commands run as processes: on the default Python only in CI (see .ci/run).
pytestmark = pytest.mark.slow

EXAMPLES = ["order_processing", "travel_booking", "trade_execution", "payment_processing"]
READMES = ["README.md", *(f"{name}/README.md" for name in EXAMPLES)]
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)


def run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("name", EXAMPLES)
def test_main_tells_a_success_and_a_compensated_failure(name: str) -> None:
    """`python main.py` in the example's folder prints a completed and a compensated run."""
    out = run(["main.py"], ROOT / "examples" / name)
    assert "-> COMPLETED" in out
    assert "-> COMPENSATED" in out
    assert " undone" in out
    assert out.count("before: ") == out.count("after: ") >= 2


@pytest.mark.parametrize("name", EXAMPLES)
def test_module_run_records_the_runs_in_a_store(name: str, tmp_path: Path) -> None:
    """`python -m examples.NAME --store sqlite:///FILE` records every run it tells."""
    store = f"sqlite:///{tmp_path / 'runs.db'}"
    out = run(["-m", f"examples.{name}", "--store", store], ROOT)
    listed = run(["-m", "statesaga.cli", "runs", "list", "--store", store], ROOT)
    assert listed.count("completed") == out.count("-> COMPLETED") >= 1
    assert listed.count("compensated") == out.count("-> COMPENSATED") >= 1


@pytest.mark.parametrize(
    ("args", "cwd"),
    [(["main.py"], "examples/order_processing"), (["-m", "examples.travel_booking"], ".")],
    ids=["script", "module"],
)
def test_a_store_that_cannot_be_used_is_one_line_before_any_run(args: list[str], cwd: str) -> None:
    """A bad --store is refused on one line, exit code 1, before any story is told."""
    done = subprocess.run(
        [sys.executable, *args, "--store", "sqlite:////nonexistent/dir/runs.db"],
        cwd=ROOT / cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("error: cannot use SQLite store '/nonexistent/dir/runs.db'")
    assert done.stderr.count("\n") == 1


def test_usage_names_the_command_that_runs_the_example() -> None:
    """`--help` names `python -m examples.NAME`, not `__main__.py`."""
    out = run(["main.py", "--help"], ROOT / "examples" / "trade_execution")
    assert out.startswith("usage: python -m examples.trade_execution [-h] [--store URL]")


def test_a_copied_example_runs_under_its_new_name(tmp_path: Path) -> None:
    """`cp -r examples/order_processing examples/my_saga` gives a saga that runs as is."""
    examples = tmp_path / "examples"
    examples.mkdir()
    for shared in (ROOT / "examples").glob("*.py"):
        shutil.copy(shared, examples)
    shutil.copytree(
        ROOT / "examples" / "order_processing",
        examples / "my_saga",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    assert "-> COMPENSATED" in run(["main.py"], examples / "my_saga")
    assert "-> COMPLETED" in run(["-m", "examples.my_saga"], tmp_path)


@pytest.mark.parametrize("page", READMES)
def test_readme_snippets_run_and_print_what_they_show(page: str) -> None:
    """Each README's python blocks run in order; a text block right after one is its output."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    namespace: dict[str, object] = {"__name__": "__readme__"}
    printed: str | None = None
    for lang, body in BLOCK.findall((ROOT / "examples" / page).read_text(encoding="utf-8")):
        # A block opening with a `# path` comment is an excerpt of a file, not a snippet.
        if lang == "python" and not body.startswith("# "):
            # The quick start awaits at top level, as in `python -m asyncio`.
            code = compile(body, page, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                awaited = eval(code, namespace)
                if inspect.iscoroutine(awaited):
                    asyncio.run(awaited)
            printed = out.getvalue()
        elif lang == "text" and printed is not None:
            assert printed.rstrip() == body.rstrip()
            printed = None
        else:
            printed = None
    result = namespace.get("result")
    assert result is not None, f"{page} shows no run"


# -- the trade example: a wait for a person, conditional steps, a timeout ---------------------


async def tell_trade_story(number: int) -> SagaResult:
    """Story ``number`` (from 1) of the trade example, in memory, on a reset world."""
    from examples import _runner
    from examples.trade_execution.main import STORIES
    from examples.trade_execution.services import world

    story = STORIES[number - 1]
    world.reset()
    if story.setup is not None:
        story.setup()
    return await asyncio.wait_for(_runner.run(story), 30)  # a lost signal fails, not hangs


async def test_the_small_trade_story_skips_screening_and_approval() -> None:
    """Story 1: a small trade skips the three large-trade steps and is settled."""
    from examples.trade_execution.services import world

    result = await tell_trade_story(1)
    assert result.status is SagaStatus.COMPLETED
    assert result.skipped_steps == ("screen_large_trade", "trade_approved", "record_approval")
    assert "trade_approved.skip" in [entry.trigger for entry in result.history]
    assert world.compliance.approvals == {}
    assert world.ledger.positions == {("ACC-123", "AAPL"): 100}


async def test_the_approval_story_signals_the_wait_and_the_next_step_reads_it() -> None:
    """Story 2: the run waits, a person's signal arrives, record_approval records its approver."""
    from examples.trade_execution.main import APPROVAL
    from examples.trade_execution.services import world

    result = await tell_trade_story(2)
    assert result.status is SagaStatus.COMPLETED
    assert result.skipped_steps == ()
    triggers = [entry.trigger for entry in result.history]
    assert triggers.index("trade_approved.wait") < triggers.index("trade_approved.signal")
    assert result.results["trade_approved"] == APPROVAL
    assert result.results["record_approval"] == {"approved_by": APPROVAL["approver"]}
    assert list(world.compliance.approvals.values()) == [("AAPL", APPROVAL["approver"])]
    assert world.ledger.positions == {("ACC-123", "AAPL"): 1_000}


async def test_the_unapproved_story_times_out_and_releases_the_hold() -> None:
    """Story 3: nobody approves within the window; the wait times out, the hold is released."""
    from examples.trade_execution.services import INITIAL_CASH, world

    result = await tell_trade_story(3)
    assert (result.status, result.failed_step) == (SagaStatus.COMPENSATED, "trade_approved")
    assert isinstance(result.error, WaitTimeoutError)
    assert result.compensated_steps == ("check_risk",)
    assert "record_approval" not in result.results
    assert world.risk.holds == {}
    assert world.ledger.cash == INITIAL_CASH
    assert world.exchange.fills == {}


def test_the_short_window_saga_is_the_trade_saga_with_a_one_second_wait() -> None:
    """The story's variant differs only in the wait's timeout: same name, same machine."""
    from examples.trade_execution.main import (
        APPROVAL_WINDOW,
        ShortWindowTradeSaga,
        TradeExecutionSaga,
    )
    from statesaga import compile_saga

    waits = {s.name: s.timeout for s in TradeExecutionSaga.steps if isinstance(s, Wait)}
    short = {s.name: s.timeout for s in ShortWindowTradeSaga.steps if isinstance(s, Wait)}
    assert waits == {"trade_approved": APPROVAL_WINDOW.total_seconds()}
    assert short == {"trade_approved": 1.0}
    assert [s for s in ShortWindowTradeSaga.steps if not isinstance(s, Wait)] == [
        s for s in TradeExecutionSaga.steps if not isinstance(s, Wait)
    ]
    assert ShortWindowTradeSaga.name == TradeExecutionSaga.name
    assert (
        compile_saga(ShortWindowTradeSaga).fingerprint
        == compile_saga(TradeExecutionSaga).fingerprint
    )


def test_the_trade_example_prints_the_command_that_approves_a_stored_run(tmp_path: Path) -> None:
    """With --store, story 2 prints `statesaga runs signal RUN_ID ...` naming its own run, which
    took that signal and completed (the same command again is refused: the wait is over)."""
    store = f"sqlite:///{tmp_path / 'trades.db'}"
    out = run(["-m", "examples.trade_execution", "--store", store], ROOT)
    signal = r"statesaga runs signal (\w+) trade_approved --data '(.*?)' --store (\S+)"
    [story] = [block for block in out.split("\n\n") if re.search(signal, block)]
    found = re.search(signal, story)
    assert found is not None
    run_id, data, url = found.groups()
    assert url == store
    assert "-> COMPLETED in" in story
    assert f"(run {run_id})" in story
    shown = run(["-m", "statesaga.cli", "runs", "show", run_id, "--store", store], ROOT)
    assert re.search(rf"trade_approved +\w+ +.* taken +{re.escape(data)}", shown), shown
    again = subprocess.run(
        [sys.executable, "-m", "statesaga.cli", *shlex.split(found.group(0))[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert again.returncode == 1, again.stdout + again.stderr


async def test_a_stored_large_trade_is_approved_from_the_command_line(tmp_path: Path) -> None:
    """A large trade started durably waits as a stored run; `statesaga runs signal` in another
    process approves it, and the run completes with the approver recorded."""
    from examples.trade_execution import TradeExecutionSaga
    from examples.trade_execution.services import world
    from statesaga.durable import shutdown

    world.reset()
    store = f"sqlite:///{tmp_path / 'trades.db'}"
    trade = TradeExecutionSaga(
        trade_id="TRD-2001", account_id="ACC-123", symbol="AAPL", quantity=1_000, price=150.00
    )
    started = await trade.start(store=store)
    try:
        listed = ""
        for _ in range(200):  # until `runs list --status waiting` shows it
            listed = await cli("runs", "list", "--status", "waiting", "--store", store)
            if started.saga_id in listed:
                break
            await asyncio.sleep(0.05)
        assert started.saga_id in listed, listed
        assert world.risk.holds != {}  # the cash stays set aside while the run waits
        approval = '{"approver": "r.patel", "limit": 500000}'
        said = await cli(
            "runs",
            "signal",
            started.saga_id,
            "trade_approved",
            "--data",
            approval,
            "--store",
            store,
        )
        assert f"{started.saga_id}: signal 'trade_approved' accepted" in said
        result = await asyncio.wait_for(started.result(), 10)
    finally:
        await shutdown()
    assert result.status is SagaStatus.COMPLETED
    assert result.results["record_approval"] == {"approved_by": "r.patel"}
    assert list(world.compliance.approvals.values()) == [("AAPL", "r.patel")]
    assert world.risk.holds == {}


async def cli(*args: str) -> str:
    """`statesaga ARGS` in another process, from the repository root; its output."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "statesaga.cli",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()
