"""``Saga.submit``: a run recorded for the workers, none of it run where it was submitted."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_script_runs import python, script_store, stored

from statesaga import RunExists, Saga, StatesagaError, Step
from statesaga.context import Context
from statesaga.store import MemoryStore
from statesaga.store.sqlite import SQLiteStore
from statesaga.worker import Worker

__all__ = ["script_store"]  # the fixture, for pytest

# Each step appends its name to the file named in the input: what ran, in every process.
SHOP = """
from pathlib import Path
from statesaga import Saga, Step

async def note(ctx):
    with Path(ctx.data["log"]).open("a") as log:
        log.write(ctx.step + "\\n")

class Order(Saga):
    steps = (Step("reserve", note), Step("charge", note))
"""

SUBMITS = """
import asyncio, sys
from shop import Order

print(asyncio.run(Order(log=sys.argv[2]).submit(store=sys.argv[1], saga_id="order-1")))
"""


def test_a_submitted_run_is_driven_by_a_worker_and_each_step_runs_once(
    script_store: str, tmp_path: Path
) -> None:
    """A script submits a run and exits: no step ran there, the run waits unleased, and a
    worker in another process drives it with every step called once (none cut short)."""
    (tmp_path / "shop.py").write_text(SHOP)
    (tmp_path / "submits.py").write_text(SUBMITS)
    log = tmp_path / "steps.log"
    submitted = python("submits.py", script_store, str(log), cwd=tmp_path, env={})
    assert submitted.returncode == 0, submitted.stderr
    assert submitted.stdout.split() == ["order-1"]
    assert not log.exists()  # nothing ran in the submitting process
    assert stored(script_store, "order-1") == [("pending", None)]
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    worked = python(
        "-m", "statesaga.cli", "worker", "--once", "--store", script_store, cwd=tmp_path, env=env
    )
    assert worked.returncode == 0, worked.stderr
    assert log.read_text().split() == ["reserve", "charge"]
    assert [status for status, _ in stored(script_store, "order-1")] == ["completed"]


async def act(ctx: Context) -> None:
    return None


class Pay(Saga):
    steps = (Step("charge", act),)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(str(tmp_path / "runs.db")) as opened:
        yield opened


async def test_a_taken_id_is_refused_and_the_run_there_left_alone(store: SQLiteStore) -> None:
    assert await Pay(amount=1).submit(store=store, saga_id="p-1") == "p-1"
    with pytest.raises(RunExists, match="p-1"):
        await Pay(amount=2).submit(store=store, saga_id="p-1")
    assert (await store.load("p-1")).run.input == {"amount": 1}


async def test_an_id_is_made_when_none_is_given_and_a_worker_takes_the_run(
    store: SQLiteStore,
) -> None:
    run_id = await Pay(amount=1).submit(store=store)
    assert len(run_id) == 32
    (recovered,) = await Worker(store).run_once()
    assert recovered.result is not None
    assert recovered.result.status.value == "completed"


async def test_input_that_cannot_be_stored_is_refused_before_anything_is(
    store: SQLiteStore,
) -> None:
    with pytest.raises(StatesagaError, match="input"):
        await Pay(when=object()).submit(store=store, saga_id="p-1")
    assert await store.unfinished(1e12) == []


async def test_a_saga_no_worker_could_import_is_refused(store: SQLiteStore) -> None:
    class Local(Saga):
        steps = (Step("charge", act),)

    with pytest.raises(StatesagaError, match="no worker could drive a submitted run"):
        await Local().submit(store=store, saga_id="l-1")
    assert await store.unfinished(1e12) == []


@pytest.mark.parametrize("where", ["memory://", "object"])
def test_a_store_of_this_process_only_is_refused(where: str) -> None:
    store = MemoryStore() if where == "object" else where
    with pytest.raises(ValueError, match="a memory store lives in this process only"):
        asyncio.run(Pay().submit(store=store, saga_id="p-1"))


def test_submit_needs_a_store() -> None:
    with pytest.raises(ValueError, match="needs the store"):
        asyncio.run(Pay().submit(store=None, saga_id="p-1"))  # type: ignore[arg-type]
