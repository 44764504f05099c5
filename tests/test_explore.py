"""The failure space a saga's compiled machine generates (``statesaga.testing.explore``)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from helpers import run_cli

from statesaga import Retry, Saga, Step, Wait
from statesaga.context import Context
from statesaga.result import SagaResult
from statesaga.testing import Scenario, explore, scenarios
from statesaga.vocabulary import idempotency_key

# A fake payment service: what it charged and refunded, by idempotency key.
CHARGES: dict[str, float] = {}
REFUNDS: list[str] = []
HELD: dict[str, int] = {}


def reset() -> None:
    CHARGES.clear()
    REFUNDS.clear()
    HELD.clear()


async def reserve(ctx: Context) -> dict[str, Any]:
    HELD[ctx.idempotency_key] = 1
    return {"held": 1}


async def release(ctx: Context) -> None:
    HELD.pop(ctx.idempotency_key.removesuffix(":compensate"), None)


async def charge(ctx: Context) -> dict[str, Any]:
    CHARGES[ctx.idempotency_key] = 10.0  # keyed: a repeat charges nothing more
    return {"paid": 10.0}


async def refund(ctx: Context) -> None:
    key = ctx.idempotency_key.removesuffix(":compensate")
    if key in CHARGES and key not in REFUNDS:  # tolerates "nothing to undo" and repeats
        REFUNDS.append(key)


async def ship(ctx: Context) -> dict[str, Any]:
    return {"tracking": "T-1"}


async def nothing(ctx: Context) -> None:
    return None


def check_money(result: SagaResult, scenario: Scenario) -> None:
    """Money is charged at most once and refunded exactly when the run was compensated."""
    assert len(CHARGES) <= 1
    assert len(REFUNDS) <= 1
    if "charge" in result.compensated_steps:
        assert len(REFUNDS) == len(CHARGES)


class Order(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Step("charge", charge, compensate=refund, retry=Retry(attempts=3, delay=0.01)),
        Step("ship", ship, compensate=nothing, timeout=5),
        Step("confirm", nothing),
    )


class OrderDag(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Step("charge", charge, compensate=refund, depends_on=("reserve",)),
        Step("label", ship, compensate=nothing, depends_on=("reserve",)),
        Step("ship", nothing, depends_on=("charge", "label")),
    )


class OrderPivot(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Step("charge", charge, pivot=True),
        Step("ship", ship, retry=Retry(attempts=2, delay=0.01)),
    )


class OrderWait(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Wait("approved", timeout=60),
        Step("charge", charge, compensate=refund),
    )


@pytest.mark.parametrize("saga", [Order, OrderDag, OrderPivot, OrderWait], ids=lambda s: s.name)
async def test_a_correct_saga_holds_in_every_scenario(saga: type[Saga]) -> None:
    """A saga whose actions and compensations are idempotent holds everywhere."""
    report = await explore(saga, setup=reset, check=check_money)
    assert report.ok, report.summary()
    kinds = {s.kind for s in report.scenarios}
    assert kinds == {"fault", "crash"}
    assert all("crash" in s.name for s in report.scenarios if s.kind == "crash")
    # A run ended by a resume reads its duration from the store, on the run's own clock.
    assert all(s.result is not None and s.result.duration >= 0 for s in report.scenarios)
    if saga is OrderWait:  # the wait is tried both ways: signalled, and left to time out
        names = [s.name for s in report.scenarios if s.kind == "fault"]
        assert "approved: signal arrives -> completed" in names
        assert "approved: wait times out (60 s) -> compensated: reserve" in names


def test_scenarios_are_named_for_a_person() -> None:
    """Names say the fault and the prediction; crash points say so."""
    names = [str(s) for s in scenarios(Order)]
    assert "charge: exhausts 3 attempts -> compensated: reserve" in names
    assert "ship: times out (5 s) -> compensated: ship, charge, reserve" in names
    assert any(n.startswith("charge: reply lost") and n.endswith("-> completed") for n in names)
    assert (
        "reserve compensation: exhausts 3 attempts (with charge: fails (non-retryable))"
        " -> failed; compensated: nothing; compensation gave up: reserve"
    ) in names
    assert len(names) == len(set(names))
    assert len(scenarios(Order, crashes=False)) < len(names)
    assert len(scenarios(Order, crashes=False, pairs=True)) > len(scenarios(Order, crashes=False))


async def test_a_scenario_runs_on_its_own() -> None:
    """``scenario.run`` gives an outcome with ``ok`` and ``explain()``."""
    [scenario] = [
        s for s in scenarios(Order, crashes=False) if str(s).startswith("charge: exhausts")
    ]
    outcome = await scenario.run(data={}, setup=reset, check=check_money)
    assert outcome.ok, outcome.explain()
    assert outcome.observed == "compensated: reserve"


async def test_async_setup_and_check_are_awaited() -> None:
    """``setup`` and ``check`` may be async; a failing check fails the scenario."""
    calls: list[str] = []

    async def setup() -> None:
        calls.append("setup")

    async def check(result: SagaResult, scenario: Scenario) -> None:
        assert result.status.value != "compensated", "no compensation expected"

    report = await explore(Order, setup=setup, check=check, crashes=False)
    assert calls
    assert not report.ok
    assert "no compensation expected" in report.summary()


async def refund_every_time(ctx: Context) -> None:
    REFUNDS.append(ctx.idempotency_key)  # not idempotent: a repeat refunds again


class RefundsTwice(Saga):
    steps = (
        Step("charge", charge, compensate=refund_every_time),
        Step("ship", ship),
    )


async def test_a_compensation_that_refunds_twice_after_a_crash_is_caught() -> None:
    """A compensation run again after a crash must not refund twice."""
    report = await explore(RefundsTwice, setup=reset, check=check_money)
    failed = [s.name for s in report.scenarios if not s.ok]
    assert failed, report.summary()
    assert all("crash" in name and "charge compensation" in name for name in failed)


async def charge_every_time(ctx: Context) -> dict[str, Any]:
    CHARGES[f"{ctx.idempotency_key}:{ctx.attempt}"] = 10.0  # ignores the key: charges again
    return {"paid": 10.0}


class ChargesTwice(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Step("charge", charge_every_time, compensate=refund, retry=Retry(attempts=2, delay=0)),
    )


async def test_an_action_that_charges_twice_under_a_lost_reply_is_caught() -> None:
    """A lost reply retried must not charge twice."""
    report = await explore(ChargesTwice, setup=reset, check=check_money, crashes=False)
    failed = [s for s in report.scenarios if not s.ok]
    lost = "charge: reply lost after its effect (OutcomeUnknownError) -> completed"
    [caught] = [s for s in failed if s.name == lost]
    assert caught.error is not None
    assert "check failed" in caught.error


async def cancel_label(ctx: Context) -> None:
    ctx.results["label"]["tracking"]  # assumes the step's result exists


class AssumesResult(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Step("label", ship, compensate=cancel_label, timeout=5),
        Step("charge", charge),
    )


async def test_a_compensation_assuming_its_result_after_a_timeout_is_caught() -> None:
    """A timed-out step has no result: its compensation must not need one."""
    report = await explore(AssumesResult, setup=reset, crashes=False)
    failed = [s for s in report.scenarios if not s.ok]
    assert "label: times out (5 s) -> compensated: label, reserve" in [s.name for s in failed]
    assert any("KeyError" in s.observed + (s.error or "") for s in failed) or all(
        "gave up" in s.observed for s in failed
    )


class RetriesConnectionErrors(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Step(
            "charge",
            charge,
            compensate=refund,
            retry=Retry(attempts=3, delay=0.01, retry_on=ConnectionError),
        ),
    )


async def test_a_step_retrying_only_some_errors_gets_faults_it_retries() -> None:
    """``retry_on`` is honoured: "fails once" raises an error the step retries, and a lost
    reply the step does not retry ends it in doubt (compensated)."""
    names = [str(s) for s in scenarios(RetriesConnectionErrors, crashes=False)]
    assert "charge: fails once, then succeeds -> completed" in names
    assert "charge: exhausts 3 attempts -> compensated: reserve" in names
    lost = "charge: reply lost after its effect (OutcomeUnknownError)"
    assert f"{lost} -> compensated: charge, reserve" in names
    report = await explore(RetriesConnectionErrors, setup=reset, check=check_money)
    assert report.ok, report.summary()


def never(ctx: Context) -> bool:
    return False


class SkipsItsApproval(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Step("approve", ship, compensate=nothing, when=never),
        Step("charge", charge, compensate=refund),
        Step("ship", ship),
    )


async def test_no_crash_point_is_put_on_a_skipped_steps_compensation() -> None:
    """A conditional step may be skipped: its compensation is no crash point."""
    names = [str(s) for s in scenarios(SkipsItsApproval)]
    assert not [n for n in names if "crash after approve compensation" in n]
    assert [n for n in names if n.startswith("approve compensation (if it runs)")]
    report = await explore(SkipsItsApproval, setup=reset, check=check_money)
    assert report.ok, report.summary()


def _chain(length: int) -> type[Saga]:
    steps = tuple(Step(f"s{i:02}", ship, compensate=nothing) for i in range(length))
    return type("Chain20", (Saga,), {"steps": steps, "__module__": __name__})


async def test_a_20_step_chain_s_default_set_is_counted_before_it_runs() -> None:
    """The count is known from the machine; every scenario holds (its speed is measured by
    ``make bench``, section 12)."""
    saga = _chain(20)
    assert len(scenarios(saga)) == 461
    report = await explore(saga)
    assert report.ok, report.summary()
    assert len(report.scenarios) == 461


SAGA_FILE = """
from statesaga import Saga, Step

REFUNDS = []

async def charge(ctx):
    return {"paid": 1}

async def refund(ctx):
    REFUNDS.append(ctx.idempotency_key)

async def ship(ctx):
    return None

def reset():
    REFUNDS.clear()

def at_most_one_refund(result, scenario):
    assert len(REFUNDS) <= 1, f"refunded {len(REFUNDS)} times"

class Shop(Saga):
    steps = (Step("charge", charge, compensate=refund), Step("ship", ship))
"""


def test_the_check_command_exits_0_when_every_scenario_holds(tmp_path: Path) -> None:
    """``statesaga check`` prints the proofs, the count and a line per scenario."""
    (tmp_path / "shop.py").write_text(SAGA_FILE)
    done = run_cli("check", "shop.py:Shop", "--data", "{}", "--no-crashes", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("proved: every state")
    assert "Shop: 9 scenarios" in lines
    assert any(line.startswith("ok   happy path") for line in lines)


def test_the_check_command_exits_1_naming_the_failing_scenario(tmp_path: Path) -> None:
    """A failing scenario is named, with how to replay it."""
    (tmp_path / "shop.py").write_text(SAGA_FILE)
    done = run_cli(
        "check",
        "shop:Shop",
        "--setup",
        "shop:reset",
        "--check",
        "shop:at_most_one_refund",
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "FAIL charge compensation" not in done.stdout
    assert "FAILED: " in done.stdout
    assert "crash" in done.stdout
    assert "refunded 2 times" in done.stdout
    assert "replay it with:" in done.stdout


@pytest.mark.parametrize(
    "args",
    [("nowhere.py:Shop",), ("shop.py:Shop", "--data", "{not json")],
    ids=["bad target", "bad data"],
)
def test_the_check_command_exits_2_on_a_usage_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    """A bad target or --data that is not JSON is a usage error."""
    (tmp_path / "shop.py").write_text(SAGA_FILE)
    done = run_cli("check", *args, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr


class Split(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Step("label", ship, compensate=nothing),
        Step("charge", charge, compensate=refund, depends_on=("reserve",)),
        Step("ship", nothing, depends_on=("charge", "label")),
    )


async def test_a_dag_step_fails_while_its_siblings_are_still_running() -> None:
    """A sibling that would be done before the step starts is held running until the step
    has failed; it finishes and is undone."""
    names = [s.name for s in scenarios(Split, crashes=False)]
    assert "charge: fails while label is running -> compensated: label, reserve" in names
    [scenario] = [
        s for s in scenarios(Split, crashes=False) if s.name.startswith("charge: fails while")
    ]
    outcome = await scenario.run(setup=reset, check=check_money)
    assert outcome.ok, outcome.explain()
    assert outcome.result is not None
    order = [e.dest for e in outcome.result.history]
    assert order.index("charge.failed") < order.index("label.succeeded"), order
    report = await explore(Split, setup=reset, check=check_money)
    assert report.ok, report.summary()


LEDGER: list[str] = []


async def open_account(ctx: Context) -> dict[str, Any]:
    LEDGER.append("open")
    return {}


async def close_account(ctx: Context) -> None:
    if "deposit" in LEDGER and "withdraw" not in LEDGER:
        LEDGER.append("closed holding money")
    LEDGER.append("close")


async def deposit(ctx: Context) -> dict[str, Any]:
    LEDGER.append("deposit")
    return {}


async def withdraw(ctx: Context) -> None:
    LEDGER.append("withdraw")


def reset_ledger() -> None:
    LEDGER.clear()


def no_account_closed_holding_money(result: SagaResult, scenario: Scenario) -> None:
    if result.compensation_errors:
        return  # a withdrawal that gave up leaves the money for a person to return
    assert "closed holding money" not in LEDGER, f"the ledger went {LEDGER}"


def _bank(deposit_depends: tuple[str, ...]) -> type[Saga]:
    steps = (
        Step("open", open_account, compensate=close_account),
        Step("deposit", deposit, compensate=withdraw, depends_on=deposit_depends),
        Step("notify", nothing, depends_on=("open", "deposit")),
    )
    return type("Bank", (Saga,), {"steps": steps, "__module__": __name__})


async def test_a_dag_whose_dependencies_give_the_wrong_compensation_order_is_caught() -> None:
    """``deposit`` needs ``open`` but does not say so: its money can be left in an account
    closed before it is withdrawn; declared, compensations run in reverse dependency order."""
    wrong = await explore(
        _bank(()), setup=reset_ledger, check=no_account_closed_holding_money, crashes=False
    )
    failed = [s for s in wrong.scenarios if not s.ok]
    assert failed, wrong.summary()
    assert all("closed holding money" in (s.error or "") for s in failed)
    assert any(s.name.startswith("deposit compensation: fails once") for s in failed)
    right = await explore(
        _bank(("open",)), setup=reset_ledger, check=no_account_closed_holding_money
    )
    assert right.ok, right.summary()


WRAPPED: list[str] = []


def wants_gift(ctx: Context) -> bool:
    return bool(ctx.data.get("gift"))


async def wrap(ctx: Context) -> dict[str, Any]:
    WRAPPED.append(ctx.idempotency_key)
    return {}


async def unwrap(ctx: Context) -> None:
    key = idempotency_key(ctx.saga_id, "wrap")
    if key in WRAPPED:
        WRAPPED.remove(key)


class Gift(Saga):
    steps = (
        Step("reserve", reserve, compensate=release),
        Step("wrap", wrap, compensate=unwrap, when=wants_gift),
        Step("charge", charge, compensate=refund),
    )


def reset_gift() -> None:
    reset()
    WRAPPED.clear()


def nothing_left_wrapped(result: SagaResult, scenario: Scenario) -> None:
    check_money(result, scenario)
    if result.status.value != "completed" and "wrap" not in result.compensation_errors:
        assert not WRAPPED, f"left wrapped: {WRAPPED}"


@pytest.mark.parametrize("gift", [True, False])
async def test_a_conditional_step_s_faults_strike_when_it_runs(gift: bool) -> None:
    """Faults are generated for a conditional step; when its condition is false for the
    data, the prediction is the one without them, and the outcome says it was skipped."""
    report = await explore(Gift, data={"gift": gift}, setup=reset_gift, check=nothing_left_wrapped)
    assert report.ok, report.summary()
    [fails] = [s for s in report.scenarios if s.name.startswith("wrap (if it runs): fails (")]
    assert fails.name.endswith("-> compensated: reserve")
    if gift:
        assert fails.observed == "compensated: reserve"
    else:
        assert fails.observed == "completed"
        assert fails.expected == "completed (wrap skipped for this data)"


async def test_explore_runs_every_scenario_on_a_stored_url(tmp_path: Path) -> None:
    """``store=URL`` keeps every scenario's run in that store, crashes and resumes included."""
    from statesaga.durable import open_store, shutdown

    url = f"sqlite:///{tmp_path / 'explore.db'}"
    try:
        report = await explore(OrderDag, setup=reset, check=check_money, store=url)
        assert report.ok, report.summary()
        store = await open_store(url)
        runs = await store.list_runs(limit=10_000)
        assert len(runs) == len(report.scenarios)
        assert all(r.finished for r in runs)
    finally:
        await shutdown()


def test_the_check_command_takes_a_store_url(tmp_path: Path) -> None:
    """``statesaga check --store URL`` runs the scenarios on that store."""
    (tmp_path / "shop.py").write_text(SAGA_FILE)
    url = f"sqlite:///{tmp_path / 'check.db'}"
    done = run_cli("check", "shop:Shop", "--store", url, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = run_cli("runs", "list", "--store", url, "--limit", "1000", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("Shop") >= 9


def test_the_replay_snippet_runs_the_failing_scenario_again() -> None:
    """The snippet a failure shows is a program: it imports the saga, setup and check, and
    prints the same failure."""
    import subprocess
    import sys

    report = asyncio.run(explore(RefundsTwice, setup=reset, check=check_money))
    failed = report.failures[0]
    assert "setup=reset, check=check_money" in failed.replay
    here = Path(__file__).resolve().parent
    done = subprocess.run(
        [sys.executable, "-c", failed.replay],
        cwd=here,
        env={**os.environ, "PYTHONPATH": f"{here}{os.pathsep}{here.parent}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"FAILED: {failed.name}"), done.stdout
