"""A durable run reads its input and results as a resumed run will: the stored JSON form."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statesaga import Saga, SagaStatus, Step, resume
from statesaga.context import Context
from statesaga.json_data import as_stored
from statesaga.store import MemoryStore, SagaStore, StoreError
from statesaga.store.sqlite import SQLiteStore


class Colour(enum.IntEnum):
    RED = 1


def typed(value: Any) -> Any:
    """``value`` as a tree that also tells its types apart (a tuple is not a list)."""
    if isinstance(value, dict):
        return (type(value).__name__, sorted((repr(k), typed(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, [typed(v) for v in value])
    return (type(value).__name__, value)


def test_tuples_and_subclasses_become_the_plain_json_types() -> None:
    """Tuples come back as lists, dict and int subclasses as plain dicts and ints."""
    value = {"pair": (1, 2), "od": OrderedDict(a=1), "colour": Colour.RED}
    stored = as_stored(value, what="input", run_id="r")
    assert typed(stored) == typed({"pair": [1, 2], "od": {"a": 1}, "colour": 1})


def test_a_key_that_is_not_a_string_is_refused_with_its_path() -> None:
    """An int key is refused, the error naming where it is and what it would become."""
    with pytest.raises(StoreError) as caught:
        as_stored({"qty": {101: 2}}, what="input", run_id="r1")
    message = str(caught.value)
    assert "input['qty'] has the key 101 (int)" in message
    assert "'101'" in message
    assert "r1" in message


def test_a_value_json_cannot_hold_is_refused_with_its_path() -> None:
    """An object deep inside is refused, the error naming its path and type."""
    with pytest.raises(StoreError, match=r"result\['lines'\]\[1\] is a set"):
        as_stored({"lines": [1, {2}]}, what="result", run_id="r")


def test_a_value_that_contains_itself_is_refused_with_its_path() -> None:
    """A dict inside itself is refused, naming where (not a RecursionError)."""
    looped: dict[str, Any] = {}
    looped["me"] = looped
    with pytest.raises(StoreError, match=r"result\['x'\]\['me'\] contains itself"):
        as_stored({"x": looped}, what="result", run_id="r")


async def test_a_result_that_contains_itself_is_compensated() -> None:
    """A durable step returning a value inside itself is compensated, like any result that
    cannot be stored."""
    undone: list[str] = []

    async def loop(ctx: Context) -> dict[str, Any]:
        looped: dict[str, Any] = {}
        looped["me"] = looped
        return {"x": looped}

    async def undo(ctx: Context) -> None:
        undone.append(ctx.step)

    class Loop(Saga):
        steps = (Step("loop", loop, compensate=undo),)

    result = await Loop().execute(store=MemoryStore())
    assert result.status is SagaStatus.COMPENSATED
    assert undone == ["loop"]


def test_nan_is_refused_with_its_path() -> None:
    """A NaN is refused, naming its path."""
    with pytest.raises(StoreError, match=r"input\['x'\] is nan"):
        as_stored({"x": float("nan")}, what="input", run_id="r")


async def test_the_first_run_reads_lists_where_it_was_given_tuples() -> None:
    """A durable run's steps see the stored form of the input from the first call on."""
    seen: list[Any] = []

    async def look(ctx: Context) -> dict[str, Any]:
        seen.append(ctx.data["pair"])
        return {"back": (3, 4)}

    async def later(ctx: Context) -> None:
        seen.append(ctx.results["look"]["back"])

    class Look(Saga):
        steps = (Step("look", look), Step("later", later))

    result = await Look(pair=(1, 2)).execute(store=MemoryStore())
    assert result.status is SagaStatus.COMPLETED
    assert typed(seen) == typed([[1, 2], [3, 4]])
    assert typed(result.results["look"]) == typed({"back": [3, 4]})


async def test_input_with_an_int_key_runs_no_step() -> None:
    """Input whose dict has an int key is refused before any step runs, naming the key."""
    called: list[str] = []

    async def step(ctx: Context) -> None:
        called.append(ctx.step)

    class Keys(Saga):
        steps = (Step("a", step),)

    with pytest.raises(StoreError, match=r"input\['qty'\] has the key 101"):
        await Keys(qty={101: 2}).execute(store=MemoryStore())
    assert called == []


async def test_a_result_with_an_int_key_fails_the_step_in_doubt() -> None:
    """A durable step returning an int key is compensated, its error naming the key."""
    undone: list[str] = []

    async def odd(ctx: Context) -> dict[str, Any]:
        return {"by_sku": {7: 1}}

    async def undo(ctx: Context) -> None:
        undone.append(ctx.step)

    class Odd(Saga):
        steps = (Step("odd", odd, compensate=undo),)

    result = await Odd().execute(store=MemoryStore())
    assert result.status is SagaStatus.COMPENSATED
    assert undone == ["odd"]
    assert "result['by_sku'] has the key 7 (int)" in str(result.error)


# -- the property: a run that crashes after any step reads what an uninterrupted one reads --

STEPS = ("a", "b", "c")


reads: dict[str, list[Any]] = {}
plan: dict[str, Any] = {}


async def step(ctx: Context) -> Any:
    reads.setdefault(ctx.saga_id, []).append(
        (ctx.step, typed(dict(ctx.data)), typed(dict(ctx.results)))
    )
    if plan.get("crash_at") == (ctx.saga_id, ctx.step):
        plan["crash_at"] = None  # once: the resumed run goes on
        plan["stuck"].set()
        await asyncio.Event().wait()  # until the run is abandoned, as by a killed process
    return plan["results"][ctx.step]


class Reader(Saga):
    steps = tuple(Step(name, step) for name in STEPS)


json_leaf = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_leaf |= st.floats(allow_nan=False, allow_infinity=False)
keys = st.text(max_size=4) | st.integers(-3, 3)  # int keys must be refused, never changed
values = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.tuples(inner, inner)
        | st.dictionaries(keys, inner, max_size=3)
    ),
    max_leaves=8,
)
mappings = st.dictionaries(st.text(min_size=1, max_size=4), values, max_size=3)


async def drive(store: SagaStore, data: dict[str, Any], run_id: str, crash: str | None) -> Any:
    """Run ``Reader``; with ``crash``, abandon it in that step (two cancellations leave it
    where it stands, committing nothing more), then resume it."""
    plan["crash_at"] = (run_id, crash) if crash else None
    stuck = plan["stuck"] = asyncio.Event()
    run = asyncio.create_task(Reader(**data).execute(store=store, saga_id=run_id))
    waiting = asyncio.create_task(stuck.wait())
    await asyncio.wait([run, waiting], return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if run.done():
        return run.result()
    run.cancel()
    await asyncio.sleep(0)
    run.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await run
    return await resume(store, run_id, saga=Reader)


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=mappings, results=st.tuples(mappings, mappings, mappings), crash=st.sampled_from(STEPS))
async def test_a_resumed_run_reads_what_an_uninterrupted_one_reads(
    backend: str, data: dict[str, Any], results: tuple[dict[str, Any], ...], crash: str
) -> None:
    """Abandoning a run in any step and resuming it changes nothing a step reads, or the run is
    refused (input) or the step is compensated (result) the same way both times."""
    plan["results"] = dict(zip(STEPS, results, strict=True))
    reads.clear()
    with tempfile.TemporaryDirectory() as folder:
        store: SagaStore = (
            MemoryStore() if backend == "memory" else SQLiteStore(Path(folder) / "runs.db")
        )
        async with store:
            try:
                whole = await drive(store, data, "whole", None)
            except StoreError as error:
                refused = str(error)
            else:
                refused = None
                crashed = await drive(store, data, "crashed", crash)
            if refused is not None:
                with pytest.raises(StoreError) as again:
                    await drive(store, data, "crashed", crash)
                assert str(again.value).replace("crashed", "whole") == refused
                assert reads == {}
                return
    assert crashed.status is whole.status
    assert typed(crashed.results) == typed(whole.results)
    # The crashed run read everything twice from the crashed step on; the last reads count.
    last = {name: (d, r) for name, d, r in reads["crashed"]}
    assert last == {name: (d, r) for name, d, r in reads["whole"]}
