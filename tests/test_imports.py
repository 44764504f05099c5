"""``import statesaga`` loads the engine only: stores, messaging and drawing load at first use."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import statesaga

#: Modules an in-memory saga never needs; a name ending in "." stands for its submodules.
DEFERRED = (
    "sqlite3",
    "psycopg",
    "aio_pika",
    "nats",
    "redis",
    "cattrs",
    "graphviz",
    "transitions",
    "jinja2",
    "statesaga.store",
    "statesaga.store.",
    "statesaga.messaging",
    "statesaga.messaging.",
    "statesaga.durable",
    "statesaga.durable.",
    "statesaga.render.graph",
    "statesaga.render.model",
    "statesaga.render.chain",
    "statesaga.render.overlay",
    "statesaga.render.dot",
    "statesaga.render.mermaid",
)


def run_fresh(code: str) -> object:
    """Run ``code`` in a new interpreter and return what it printed, read as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def deferred_loaded() -> str:
    """Code that prints the ``DEFERRED`` modules present in ``sys.modules``."""
    return (
        f"loaded = sorted(m for m in sys.modules if any(m == d or (d.endswith('.') and "
        f"m.startswith(d)) for d in {DEFERRED!r}))"
    )


def test_import_loads_no_store_messaging_driver_or_drawing() -> None:
    """``import statesaga`` imports none of the stores, brokers, drivers, cattrs or graphviz."""
    loaded = run_fresh(
        f"""
        import json, sys
        import statesaga
        {deferred_loaded()}
        print(json.dumps(loaded))
        """
    )
    assert loaded == []


def test_an_in_memory_run_loads_none_of_them_either() -> None:
    """Defining, compiling and executing a saga in memory still imports none of them."""
    out = run_fresh(
        f"""
        import asyncio, json, sys
        from statesaga import Saga, SagaStatus, Step, compile_saga

        async def reserve(ctx):
            return {{"held": ctx.data["qty"]}}

        async def release(ctx):
            return None

        async def charge(ctx):
            raise RuntimeError("declined")

        class Order(Saga):
            steps = (Step("reserve", reserve, compensate=release), Step("charge", charge))

        machine = compile_saga(Order)
        result = asyncio.run(Order(qty=2).execute())
        {deferred_loaded()}
        print(json.dumps([result.status == SagaStatus.COMPENSATED, len(machine.steps), loaded]))
        """
    )
    assert out == [True, 2, []]


def test_every_public_name_resolves_to_its_object_in_a_fresh_interpreter() -> None:
    """Each name of ``__all__`` imports from ``statesaga`` as the object its module defines."""
    found = run_fresh(
        """
        import importlib, json, sys
        import statesaga

        homes = {"resume": "statesaga.durable", "shutdown": "statesaga.durable",
                 "render": "statesaga.render"}
        wrong = []
        for name in statesaga.__all__:
            value = getattr(importlib.import_module("statesaga"), name)
            exec(f"from statesaga import {name} as imported")
            if imported is not value:
                wrong.append(name)
            home = homes.get(name)
            if home and getattr(importlib.import_module(home), name) is not value:
                wrong.append(name)
        print(json.dumps([wrong, callable(statesaga.render), statesaga.resume.__module__,
                          statesaga.shutdown.__module__]))
        """
    )
    assert found == [[], True, "statesaga.durable.drive", "statesaga.durable.resources"]


def test_an_unknown_name_is_an_attribute_error() -> None:
    """A name the package does not have raises ``AttributeError`` naming it."""
    with pytest.raises(AttributeError, match="'statesaga' has no attribute 'nothing_here'"):
        _ = statesaga.nothing_here  # type: ignore[attr-defined]


def test_dir_lists_the_names_loaded_at_first_use() -> None:
    """``dir(statesaga)`` shows every public name, those not imported yet included."""
    assert set(statesaga.__all__) <= set(dir(statesaga))


def test_render_stays_the_function_after_its_modules_load() -> None:
    """Importing the drawing modules later does not replace ``statesaga.render``."""
    loaded = run_fresh(
        """
        import json
        import statesaga
        import statesaga.render.dot, statesaga.render.graph, statesaga.render.mermaid
        from statesaga import render
        print(json.dumps([callable(render), render.__module__, callable(statesaga.render)]))
        """
    )
    assert loaded == [True, "statesaga.render", True]


def test_emit_loads_messaging_when_first_called() -> None:
    """A step that emits still works in memory: messaging loads with the first message."""
    out = run_fresh(
        """
        import asyncio, json, sys
        from statesaga import Saga, Step

        async def notify(ctx):
            ctx.emit("orders", {"n": 1})

        class Notify(Saga):
            steps = (Step("notify", notify),)

        before = "statesaga.messaging.message" in sys.modules
        result = asyncio.run(Notify().execute())
        print(json.dumps([before, [m.topic for m in result.messages]]))
        """
    )
    assert out == [False, ["orders"]]


def test_a_durable_run_loads_the_stores_when_it_starts() -> None:
    """``execute(store=...)`` in a fresh interpreter imports the durable path and completes."""
    out = run_fresh(
        """
        import asyncio, json, sys
        from statesaga import Saga, Step

        async def noop(ctx):
            return None

        class Once(Saga):
            steps = (Step("only", noop),)

        before = "statesaga.durable" in sys.modules
        result = asyncio.run(Once().execute(store="memory://"))
        print(json.dumps([before, result.status, "statesaga.store.memory" in sys.modules]))
        """
    )
    assert out == [False, "completed", True]


def test_backend_classes_are_importable_from_their_packages_and_load_when_named() -> None:
    """``from statesaga.store import SQLiteStore`` works, and naming the package alone leaves
    the PostgreSQL driver unloaded until ``PostgresStore`` is asked for."""
    loaded = run_fresh(
        """
        import json, sys
        import statesaga.store, statesaga.messaging
        before = "psycopg" in sys.modules
        from statesaga.store import PostgresStore, SQLiteStore
        from statesaga.messaging import PostgresInbox, SQLiteInbox
        names = [c.__module__ for c in (SQLiteStore, PostgresStore, SQLiteInbox, PostgresInbox)]
        print(json.dumps([before, "psycopg" in sys.modules, names]))
        """
    )
    assert loaded == [
        False,
        True,
        [
            "statesaga.store.sqlite",
            "statesaga.store.postgres",
            "statesaga.messaging.inbox_sqlite",
            "statesaga.messaging.inbox_postgres",
        ],
    ]
    import statesaga.store as store_package

    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        store_package.Nope  # noqa: B018
