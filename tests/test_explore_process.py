"""Crash scenarios with a real process killed at the crash point (``crashes="process"``):
the saga's services live in a file, as they would in a database, so ``check`` sees what the
killed process did."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from statesaga import SagaResult
from statesaga.testing import Scenario, scenarios

# Real processes started, killed and restarted: run on the default Python only in CI.
pytestmark = pytest.mark.slow

SHOP = """
import json
from pathlib import Path

from statesaga import Saga, Step


def _book(ctx, entry, *, keyed):
    path = Path(ctx.data["ledger"])
    lines = path.read_text().splitlines() if path.exists() else []
    if keyed and any(json.loads(line)["key"] == ctx.idempotency_key for line in lines):
        return  # done before under this key: a real payment API answers the same
    with path.open("a") as file:
        file.write(json.dumps({"entry": entry, "key": ctx.idempotency_key}) + "\\n")


async def charge(ctx):
    _book(ctx, "charge", keyed=True)
    return {"paid": 10}


async def refund(ctx):
    _book(ctx, "refund", keyed=KEYED_REFUNDS)


async def ship(ctx):
    return {}


KEYED_REFUNDS = True


class Shop(Saga):
    steps = (Step("charge", charge, compensate=refund), Step("ship", ship))
"""


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    name = f"shop_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(SHOP)
    monkeypatch.syspath_prepend(str(tmp_path))
    return importlib.import_module(name)


def _entries(ledger: Path) -> list[str]:
    if not ledger.exists():
        return []
    return [json.loads(line)["entry"] for line in ledger.read_text().splitlines()]


def _money_checks(ledger: Path) -> tuple[object, object]:
    def setup() -> None:
        ledger.unlink(missing_ok=True)

    def check(result: SagaResult, scenario: Scenario) -> None:
        entries = _entries(ledger)
        assert entries.count("charge") <= 1, f"charged {entries.count('charge')} times"
        if result.status.value == "completed":
            assert entries == ["charge"], entries
        elif "charge" not in result.compensation_errors:
            assert entries.count("refund") == entries.count("charge"), entries

    return setup, check


async def test_a_killed_process_s_run_is_resumed_and_holds(
    shop: ModuleType, tmp_path: Path
) -> None:
    """Each crash point kills a real process; the run resumed from SQLite ends as
    predicted, and a keyed charge is made once across the two processes."""
    ledger = tmp_path / "ledger.jsonl"
    setup, check = _money_checks(ledger)
    chosen = [
        s
        for s in scenarios(shop.Shop, crashes="process")
        if s.kind == "crash" and s.name.startswith(("happy path", "ship: fails (non"))
    ]
    assert len(chosen) >= 6
    for scenario in chosen:
        outcome = await scenario.run(data={"ledger": str(ledger)}, setup=setup, check=check)
        assert outcome.ok, outcome.explain()
    assert sys.modules[shop.__name__] is shop


async def test_a_refund_repeated_by_a_killed_process_is_caught(
    shop: ModuleType, tmp_path: Path
) -> None:
    """The refund is not keyed: killed after it refunded, before that was committed, the
    resumed run refunds again, and the scenario fails naming the crash."""
    ledger = tmp_path / "ledger.jsonl"
    setup, check = _money_checks(ledger)
    [scenario] = [
        s
        for s in scenarios(shop.Shop, crashes="process")
        if s.name.startswith("charge: returns a non-mapping | crash after charge compensation")
        and "returned, before" in s.name
    ]
    shop.KEYED_REFUNDS = False  # this process's copy; the killed one reads the file's
    (tmp_path / f"{shop.__name__}.py").write_text(
        SHOP.replace("KEYED_REFUNDS = True", "KEYED_REFUNDS = False")
    )
    outcome = await scenario.run(data={"ledger": str(ledger)}, setup=setup, check=check)
    assert not outcome.ok
    assert "check failed" in (outcome.error or "")
    assert _entries(ledger) == ["charge", "refund", "refund"]


def test_process_crashes_need_an_importable_saga_and_sqlite(shop: ModuleType) -> None:
    """A saga another process cannot import, or a store it cannot share, is refused at once."""
    from statesaga import Saga, Step

    async def nothing(ctx: object) -> None:
        return None

    class Local(Saga):
        steps = (Step("a", nothing),)

    with pytest.raises(ValueError, match="defined inside a function"):
        scenarios(Local, crashes="process")
    with pytest.raises(ValueError, match="sqlite:/// URL"):
        scenarios(shop.Shop, crashes="process", store="memory://")


def test_process_crashes_give_the_same_scenarios(shop: ModuleType) -> None:
    """The same set as simulated crashes, the crash ones marked to kill a process."""
    killed = scenarios(shop.Shop, crashes="process")
    assert [s.name for s in killed] == [s.name for s in scenarios(shop.Shop)]
    assert {s.process for s in killed} == {True}


def test_the_check_command_kills_a_process_at_each_crash_point(shop: ModuleType) -> None:
    """``statesaga check --process-crashes`` runs the crash points in killed processes."""
    from helpers import run_cli

    folder = Path(shop.__file__).parent
    data = json.dumps({"ledger": str(folder / "ledger.jsonl")})
    name = shop.__name__
    done = run_cli("check", f"{name}:Shop", "--data", data, "--process-crashes", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Shop: 35 scenarios" in done.stdout.splitlines()
    both = run_cli("check", f"{name}:Shop", "--no-crashes", "--process-crashes", cwd=folder)
    assert both.returncode == 2
    assert "contradict" in both.stderr
