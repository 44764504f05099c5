from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import check_golden, run_cli, write_orders_saga
from hypothesis import given, settings
from hypothesis import strategies as st

from statesaga import Retry, Saga, Step, compile_saga
from statesaga.compiler import Transition
from statesaga.errors import OutcomeUnknownError, StatesagaError
from statesaga.loader import load_saga
from statesaga.render import RenderError, dot_of, graph_of, mermaid_of, render, svg_of
from statesaga.render.dot import to_dot
from statesaga.render.graph import Graph
from statesaga.render.mermaid import to_mermaid
from statesaga.store import TransitionRecord

HAS_DOT = shutil.which("dot") is not None
MAGIC = {"svg": b"<svg", "png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF-"}


async def act(ctx: object) -> None:
    return None


async def undo(ctx: object) -> None:
    return None


async def boom(ctx: object) -> None:
    raise ValueError("card declined")


class Checkout(Saga):
    """A chain of three steps; the second is the pivot."""

    steps = (
        Step("reserve", act, compensate=undo),
        Step("charge", act, pivot=True),
        Step("ship", act),
    )


class Fanout(Saga):
    """A diamond: b and c depend on a, d joins them."""

    steps = (
        Step("a", act, compensate=undo),
        Step("b", act, depends_on=("a",), compensate=undo),
        Step("c", act, depends_on=("a",)),
        Step("d", act, depends_on=("b", "c")),
    )


class FailingFanout(Saga):
    """The diamond again, with c failing so that a and b are compensated."""

    steps = (
        Step("a", act, compensate=undo),
        Step("b", act, depends_on=("a",), compensate=undo),
        Step("c", boom, depends_on=("a",)),
        Step("d", act, depends_on=("b", "c")),
    )


def recorded(moves: list[tuple[str, str, str]]) -> list[TransitionRecord]:
    """A run's history of the given (trigger, source, dest) moves, numbered from 1."""
    return [
        TransitionRecord(n, trigger, source, dest, 0.0)
        for n, (trigger, source, dest) in enumerate(moves, start=1)
    ]


@pytest.mark.parametrize(
    ("saga", "name"), [(Checkout, "render_chain"), (Fanout, "render_dag")], ids=["chain", "dag"]
)
def test_dot_matches_golden(saga: type[Saga], name: str) -> None:
    """The DOT text of a chain and of a DAG matches the committed golden file."""
    check_golden(f"{name}.dot", dot_of(saga))


@pytest.mark.parametrize(
    ("saga", "name"), [(Checkout, "render_chain"), (Fanout, "render_dag")], ids=["chain", "dag"]
)
def test_mermaid_matches_golden(saga: type[Saga], name: str) -> None:
    """The Mermaid text of a chain and of a DAG matches the committed golden file."""
    check_golden(f"{name}.mmd", mermaid_of(saga))


def test_text_output_is_deterministic() -> None:
    """Building the DOT and Mermaid text twice gives identical strings."""
    compiled = compile_saga(Fanout)
    assert to_dot(graph_of(compiled)) == to_dot(graph_of(compiled))
    assert to_mermaid(graph_of(compiled)) == to_mermaid(graph_of(compiled))


def test_visual_language() -> None:
    """Compensations are dashed, failures red, finals doublecircle, the pivot marked."""
    dot = dot_of(Checkout)
    assert '"completed" [label="completed", shape="doublecircle"' in dot
    assert '"charge.running" [label="charge\\nrunning\\n(pivot)", peripheries="2"' in dot
    assert '"reserve.running" -> "reserve.failed" [color="#c62828"' in dot
    compensate = '"reserve.compensated" -> "reserve.compensating" [color="#1f6fb4"'
    assert compensate in dot
    assert 'style="dashed"' in dot.split(compensate)[1].splitlines()[0]
    assert 'subgraph "cluster_legend"' in dot
    assert 'rankdir="LR"' in dot


def test_dag_has_regions_fork_and_join() -> None:
    """A DAG is drawn with one cluster per region and fork/join edges."""
    dot = dot_of(Fanout)
    for region in ("saga", "a", "b", "c", "d"):
        assert f'subgraph "cluster_{region}"' in dot
    assert '"running" -> "a.running" [color="#7b7b7b"' in dot
    assert '"b.succeeded" -> "d.running"' in dot
    assert '"c.succeeded" -> "d.running"' in dot
    assert '"d.succeeded" -> "completed"' in dot


async def test_run_overlay_highlights_the_path(tmp_path: Path) -> None:
    """A run's visited states and taken edges are highlighted, its final state emphasised."""
    result = await FailingFanout().execute()
    path = render(FailingFanout, tmp_path / "run.dot", run=result)
    lines = path.read_text().splitlines()

    def line(start: str) -> str:
        return next(x for x in lines if x.strip().startswith(start))

    assert 'penwidth="2.5"' in line('"c.running" -> "c.failed"')
    assert "ValueError: card declined" in line('"c.running" -> "c.failed"')
    assert 'penwidth="2.5"' in line('"b.compensating" -> "b.succeeded"')  # drawn right to left
    assert "penwidth" not in line('"d.running" -> "d.succeeded"')
    assert 'penwidth="3"' in line('"compensated" [')
    assert 'fillcolor="#ffe9b3"' in line('"a.succeeded" [')
    assert 'fillcolor="white"' in line('"d.pending" [')


def test_run_overlay_notes_attempts_and_errors(tmp_path: Path) -> None:
    """Stored transitions (a RunSnapshot's history) note attempts and errors on edges."""
    history = (
        TransitionRecord(1, "start", "pending", "running", 0.0),
        TransitionRecord(2, "reserve.start", "running", "reserve.running", 0.0, 1),
        TransitionRecord(3, "reserve.retry", "reserve.running", "reserve.running", 0.0, 2, "E"),
        TransitionRecord(4, "reserve.retry", "reserve.running", "reserve.running", 0.0, 3, "E"),
    )
    path = render(Checkout, tmp_path / "run.mmd", run=SimpleNamespace(history=history))
    text = path.read_text()
    assert "s_reserve__running --> s_reserve__running : retry (x2, attempt 3, E) ●" in text
    assert "class s_reserve__running current" in text


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz 'dot' is not installed")
@pytest.mark.parametrize("fmt", ["svg", "png", "pdf"])
def test_real_render(tmp_path: Path, fmt: str) -> None:
    """Each image format renders through Graphviz to a file of that type."""
    path = render(Fanout, tmp_path / f"fanout.{fmt}")
    head = path.read_bytes()[:400]
    assert MAGIC[fmt] in head


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz 'dot' is not installed")
def test_svg_of_gives_svg_text() -> None:
    """svg_of draws a saga (or its compiled machine) as SVG text, for a page or a notebook."""
    assert "<svg" in svg_of(Checkout)
    assert svg_of(compile_saga(Checkout)) == svg_of(Checkout)


def test_missing_dot_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the dot binary images fail with install advice; text formats still work."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(RenderError, match="apt-get install graphviz") as info:
        render(Checkout, tmp_path / "x.svg")
    assert isinstance(info.value, StatesagaError)
    assert "\n" not in str(info.value)
    assert render(Checkout, tmp_path / "x.dot").read_text().startswith("digraph")
    assert "stateDiagram-v2" in render(Checkout, tmp_path / "x.mmd").read_text()


def test_unknown_format(tmp_path: Path) -> None:
    """An unknown format is refused with the list of known ones."""
    with pytest.raises(RenderError, match="use one of dot, mmd, pdf, png, svg"):
        render(Checkout, tmp_path / "x.gif")


def test_missing_output_folder(tmp_path: Path) -> None:
    """A missing output folder is reported, not created."""
    with pytest.raises(RenderError, match="does not exist"):
        render(Checkout, tmp_path / "nope" / "x.dot")


@pytest.fixture
def saga_file(tmp_path: Path) -> Path:
    return write_orders_saga(tmp_path)


def assert_one_line_error(done: subprocess.CompletedProcess[str], text: str) -> None:
    assert done.returncode != 0
    assert done.stderr.startswith("error: ")
    assert text in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz 'dot' is not installed")
def test_cli_diagram_default_svg(saga_file: Path) -> None:
    """`statesaga diagram file.py:Class` writes <SagaName>.svg in the current folder."""
    done = run_cli("diagram", f"{saga_file}:Orders", cwd=saga_file.parent)
    assert done.returncode == 0, done.stderr
    assert (saga_file.parent / "Orders.svg").read_bytes().lstrip().startswith(b"<?xml")


def test_cli_diagram_mermaid_by_format(saga_file: Path) -> None:
    """--format mmd writes Mermaid text to <SagaName>.mmd."""
    done = run_cli("diagram", f"{saga_file}:Orders", "--format", "mmd", cwd=saga_file.parent)
    assert done.returncode == 0, done.stderr
    assert "stateDiagram-v2" in (saga_file.parent / "Orders.mmd").read_text()


def test_cli_diagram_unknown_format(saga_file: Path) -> None:
    """An unknown format is a one-line error."""
    done = run_cli("diagram", f"{saga_file}:Orders", "-o", "x.gif", cwd=saga_file.parent)
    assert_one_line_error(done, "unknown diagram format 'gif'")


def test_cli_diagram_missing_output_folder(saga_file: Path) -> None:
    """A missing output folder is a one-line error."""
    done = run_cli("diagram", f"{saga_file}:Orders", "-o", "no/x.dot", cwd=saga_file.parent)
    assert_one_line_error(done, "does not exist")


def test_cli_diagram_unimportable_target(tmp_path: Path) -> None:
    """An unimportable target is a one-line error."""
    done = run_cli("diagram", "no_such_module_xyz:Saga", cwd=tmp_path)
    assert_one_line_error(done, "cannot import 'no_such_module_xyz'")


async def test_cli_diagram_unknown_run(saga_file: Path) -> None:
    """An unknown run id in an existing store is a one-line error."""
    store = f"sqlite:///{saga_file.parent / 'runs.db'}"
    await load_saga(f"{saga_file}:Orders")().execute(store=store, saga_id="run-1")
    args = ("diagram", f"{saga_file}:Orders", "-o", "x.dot", "--run", "nope", "--store", store)
    done = run_cli(*args, cwd=saga_file.parent)
    assert_one_line_error(done, "no run 'nope'")


async def test_cli_diagram_of_a_stored_run(saga_file: Path) -> None:
    """--run with --store draws the stored run's path; a run of another saga is refused."""
    url = f"sqlite:///{saga_file.parent / 'runs.db'}"
    orders = load_saga(f"{saga_file}:Orders")
    await orders().execute(store=url, saga_id="run-1")
    await Checkout().execute(store=url, saga_id="run-2")
    args = ("diagram", f"{saga_file}:Orders", "-o", "run.dot", "--store", url)
    done = run_cli(*args, "--run", "run-1", cwd=saga_file.parent)
    assert done.returncode == 0, done.stderr
    dot = (saga_file.parent / "run.dot").read_text()
    assert "Orders (run overlay)" in dot
    assert 'penwidth="3"' in next(
        x for x in dot.splitlines() if x.strip().startswith('"completed"')
    )
    done = run_cli(*args, "--run", "run-2", cwd=saga_file.parent)
    assert_one_line_error(done, "belongs to saga 'Checkout'")


def test_chain_picture_leaves_out_administrative_edges_unless_taken() -> None:
    """Cancellation and reopen edges are hidden in a chain's picture, shown when a run took them."""
    compiled = compile_saga(Checkout)
    shown = {e.trigger for e in graph_of(compiled).edges}
    assert {"reopen", "proceed"}.isdisjoint(shown)
    assert {t.trigger for t in compiled.transitions} >= {"reopen", "proceed"}
    reopened = [
        TransitionRecord(1, "reopen", "failed", "compensating", 0.0),
    ]
    overlaid = graph_of(compiled, SimpleNamespace(history=reopened))  # type: ignore[arg-type]
    assert "reopen" in {e.trigger for e in overlaid.edges}


def test_chain_is_drawn_as_a_grid() -> None:
    """Each step's states share columns, in a fixed order; nothing is bundled into trunks."""
    graph = graph_of(compile_saga(Checkout))
    assert ("reserve.running", "compensating", "reserve.compensating") in graph.columns
    text = to_dot(graph)
    assert "concentrate" not in text
    order = '"charge.succeeded" -> "charge.failed" -> "charge.in_doubt" [style="invis"]'
    assert (
        f'{{ rank=same; "charge.succeeded"; "charge.failed"; "charge.in_doubt"; {order}; }}' in text
    )
    assert graph_of(compile_saga(Fanout)).columns == ()


async def test_overlay_keeps_the_grid() -> None:
    """A run overlay is drawn on the same grid as the plain picture."""
    result = await Checkout().execute()
    graph = graph_of(compile_saga(Checkout), run=result)
    assert graph.columns == graph_of(compile_saga(Checkout)).columns
    assert "concentrate" not in to_dot(graph)


def test_retry_loops_are_drawn_only_for_steps_that_retry() -> None:
    """A step allowed one attempt gets no retry loop; one with Retry(attempts>1) does."""

    async def act(ctx: object) -> None:
        return None

    class Loops(Saga):
        steps = (
            Step("once", act, compensate=act, compensate_retry=Retry(attempts=1)),
            Step("again", act, compensate=act, retry=Retry(attempts=3)),
        )

    text = to_dot(graph_of(compile_saga(Loops)))
    assert '"once.running" -> "once.running"' not in text
    assert '"once.compensating" -> "once.compensating"' not in text
    assert '"again.running" -> "again.running"' in text
    assert '"again.compensating" -> "again.compensating"' in text  # the default: 3 attempts


def chain_of(
    size: int, *, compensate: bool = True, pivot: int | None = None, every: int = 1, fails: int = -1
) -> type[Saga]:
    """A chain s0..s<size-1>: each step retries; every ``every``-th step before the pivot
    has a compensation; step ``fails`` raises."""
    steps = tuple(
        Step(
            f"s{i}",
            boom if i == fails else act,
            compensate=undo
            if compensate and i % every == 0 and (pivot is None or i < pivot)
            else None,
            pivot=i == pivot,
            retry=Retry(attempts=2, delay=0, jitter=0),
        )
        for i in range(size)
    )
    return type(f"Chain{size}", (Saga,), {"steps": steps})


CHAINS = {
    "compensations": chain_of(5),
    "no-compensations": chain_of(5, compensate=False),
    "pivot": chain_of(6, pivot=3),
    "gaps": chain_of(7, every=3),
}


def hidden(t: Transition) -> bool:
    """Whether a chain's plain picture leaves transition ``t`` out (a person's doing, a
    reopened run's, or a cancellation between steps)."""
    event = t.trigger.rpartition(".")[2]
    return (
        event in ("reopen", "proceed", "push_forward")
        or (t.trigger == "abort" and t.source.endswith(".succeeded"))
        or (t.trigger == "give_up" and t.source == "compensating")
    )


def drawn(graph: Graph) -> Counter[tuple[str, str, str]]:
    """The transitions ``graph`` draws, by the states (not the nodes) they join."""
    state = {n.id: n.state for n in graph.nodes}
    return Counter((e.trigger, state[e.source], state[e.target]) for e in graph.edges if e.trigger)


def around(graph: Graph, node: str) -> set[tuple[str, str, str]]:
    """The edges at ``node``: (source, label, target)."""
    return {(e.source, e.label, e.target) for e in graph.edges if node in (e.source, e.target)}


@pytest.mark.parametrize("saga", CHAINS.values(), ids=CHAINS.keys())
def test_every_transition_is_drawn_exactly_once(saga: type[Saga]) -> None:
    """Each transition of a chain's machine is exactly one edge of its picture."""
    compiled = compile_saga(saga)
    shown = Counter((t.trigger, t.source, t.dest) for t in compiled.transitions if not hidden(t))
    assert drawn(graph_of(compiled)) == shown


def test_compensating_is_drawn_beside_each_step_it_starts_compensating() -> None:
    """Aborts enter the drawing of compensating beside the last step to undo, which leaves
    for that step's compensation; with nothing to undo, the hub finishes."""
    graph = graph_of(compile_saga(chain_of(4)))
    assert around(graph, "compensating@s1") == {
        ("s1.in_doubt", "abort", "compensating@s1"),
        ("s2.failed", "abort", "compensating@s1"),
        ("compensating@s1", "compensate", "s1.compensating"),
    }
    assert around(graph, "compensating@s3") == {
        ("s3.in_doubt", "abort", "compensating@s3"),
        ("compensating@s3", "compensate", "s3.compensating"),
    }
    assert around(graph, "compensating") == {
        ("running", "abort", "compensating"),
        ("s0.failed", "abort", "compensating"),
        ("compensating", "finish", "compensated"),
    }
    assert {n.label for n in graph.nodes if n.state == "compensating"} == {"compensating"}
    note = next(n.label for n in graph.nodes if n.kind == "note")
    assert "compensating state is drawn\nbeside each step it starts compensating" in note
    assert "beside each step" in to_dot(graph)


def test_steps_without_compensation_pass_compensating_along_a_rail() -> None:
    """A step with nothing to undo joins its drawing of compensating to the one before."""
    graph = graph_of(compile_saga(chain_of(4, every=3)))
    rails = {(e.source, e.target) for e in graph.edges if e.kind == "rail"}
    assert rails == {
        ("compensating@s2", "compensating@s1"),
        ("compensating@s1", "compensating@s0"),
        ("legend.3.from", "legend.3.to"),  # the legend's sample
    }
    assert around(graph, "compensating@s2") == {
        ("s2.in_doubt", "abort", "compensating@s2"),
        ("s3.failed", "abort", "compensating@s2"),
        ("compensating@s2", "", "compensating@s1"),
    }
    assert "nothing to undo" in {e.label for e in graph.edges if e.kind == "rail"}


def test_a_halted_run_is_drawn_failed_beside_its_step() -> None:
    """Past the pivot, each step's halt enters a drawing of failed beside it."""
    graph = graph_of(compile_saga(chain_of(6, pivot=3)))
    assert around(graph, "failed@s4") == {
        ("s4.failed", "halt", "failed@s4"),
        ("s4.in_doubt", "halt", "failed@s4"),
    }
    assert around(graph, "failed@s3") == {("s3.in_doubt", "halt", "failed@s3")}
    assert {e.label for e in graph.edges if "failed" in (e.source, e.target)} == {"give_up"}


def node_at(node: str, size: int) -> int:
    """The index of the step ``node`` is drawn beside (saga states: -1, ``completed``: size)."""
    step = node.rpartition("@")[2] if "@" in node else node.rpartition(".")[0]
    if step:
        return int(step[1:])
    return size if node == "completed" else -1


@pytest.mark.parametrize(
    "shape",
    [{}, {"compensate": False}, {"pivot": 5}, {"every": 4}],
    ids=["compensations", "no-compensations", "pivot", "gaps"],
)
def test_a_long_chain_grows_linearly(shape: dict[str, Any]) -> None:
    """No edge at compensating or failed reaches past the next step, so nodes, edges and
    their total length (Graphviz's work) grow linearly with the steps."""
    counts = []
    for size in (20, 40, 60):
        graph = graph_of(compile_saga(chain_of(size, **shape)))
        split = {n.id for n in graph.nodes if n.label in ("compensating", "failed")}
        aids = {n.id for n in graph.nodes if n.kind in ("start", "legend")}
        length = 0
        for e in graph.edges:
            if e.source in aids or e.target in aids:
                continue
            span = abs(node_at(e.source, size) - node_at(e.target, size))
            assert span <= 1 or not {e.source, e.target} & split, e
            length += span
        text = to_dot(graph)
        counts.append((len(graph.nodes), len(graph.edges), text.count(" -> "), length))
    small, medium, large = counts
    grown = [m - s for s, m in zip(small, medium, strict=True)]
    assert grown == [g - m for m, g in zip(medium, large, strict=True)]


async def test_overlay_of_a_compensated_run_colours_the_drawings_it_passed() -> None:
    """A failure aborts into the drawing beside the last step to undo; only it is visited."""
    saga = chain_of(4, fails=2)
    graph = graph_of(compile_saga(saga), run=await saga().execute())
    visited = {n.id for n in graph.nodes if n.visited and n.state == "compensating"}
    assert visited == {"compensating@s1"}
    taken = {(e.source, e.label, e.target) for e in graph.edges if e.taken}
    assert ("s2.failed", "abort", "compensating@s1") in taken
    assert ("compensating@s1", "compensate", "s1.compensating") in taken
    assert ("s1.compensated", "compensate", "s0.compensating") in taken
    assert ("s0.compensated", "finish", "compensated") in taken
    assert not {e for e in taken if "compensating" in (e[0], e[2])}
    assert {n.id for n in graph.nodes if n.current} == {"compensated"}


async def test_overlay_follows_the_rail_past_steps_with_nothing_to_undo() -> None:
    """A failure past steps without compensations walks the rail to the step it undoes."""
    saga = chain_of(5, every=3, fails=4)  # s0 and s3 compensate
    graph = graph_of(compile_saga(saga), run=await saga().execute())
    visited = {n.id for n in graph.nodes if n.visited and n.state == "compensating"}
    assert visited == {"compensating@s3"}
    saga = chain_of(5, every=4, fails=3)  # s0 and s4 compensate: s3, s2, s1 have nothing
    graph = graph_of(compile_saga(saga), run=await saga().execute())
    visited = {n.id for n in graph.nodes if n.visited and n.state == "compensating"}
    assert visited == {"compensating@s2", "compensating@s1", "compensating@s0"}
    taken = {(e.source, e.target) for e in graph.edges if e.taken and e.kind == "rail"}
    assert taken == {("compensating@s2", "compensating@s1"), ("compensating@s1", "compensating@s0")}
    assert ("s3.failed", "abort", "compensating@s2") in around(graph, "compensating@s2")
    assert next(e for e in graph.edges if e.source == "compensating@s0").taken == 1


async def test_overlay_of_a_first_step_failure_colours_the_hub() -> None:
    """With nothing to undo, a run passes the hub drawing and finishes from it."""
    saga = chain_of(3, fails=0)
    graph = graph_of(compile_saga(saga), run=await saga().execute())
    visited = {n.id for n in graph.nodes if n.visited and n.state == "compensating"}
    assert visited == {"compensating"}
    taken = {(e.source, e.label, e.target) for e in graph.edges if e.taken}
    assert ("s0.failed", "abort", "compensating") in taken
    assert ("compensating", "finish", "compensated") in taken


def test_overlay_draws_reopen_and_proceed_at_the_drawings_the_run_used() -> None:
    """Administrative moves a run took are drawn once each, at the drawing it passed."""
    history = recorded(
        [
            ("start", "pending", "running"),
            ("s0.start", "running", "s0.running"),
            ("s0.succeed", "s0.running", "s0.succeeded"),
            ("s1.start", "s0.succeeded", "s1.running"),
            ("s1.fail", "s1.running", "s1.failed"),
            ("abort", "s1.failed", "compensating"),
            ("s0.compensate", "compensating", "s0.compensating"),
            ("s0.compensation_fail", "s0.compensating", "s0.compensation_failed"),
            ("give_up", "s0.compensation_failed", "failed"),
            ("reopen", "failed", "compensating"),
            ("s0.compensate", "compensating", "s0.compensating"),
            ("s0.compensation_done", "s0.compensating", "s0.compensated"),
            ("proceed", "s0.compensated", "compensating"),
            ("finish", "compensating", "compensated"),
        ]
    )
    graph = graph_of(compile_saga(chain_of(3)), run=SimpleNamespace(history=history))
    taken = {(e.source, e.label, e.target): e.taken for e in graph.edges if e.taken}
    assert taken[("failed", "reopen", "compensating@s0")] == 1
    assert taken[("compensating@s0", "compensate", "s0.compensating")] == 2
    assert taken[("s0.compensated", "proceed", "compensating")] == 1
    assert taken[("compensating", "finish", "compensated")] == 1
    visited = {n.id for n in graph.nodes if n.visited and n.state == "compensating"}
    assert visited == {"compensating@s0", "compensating"}
    assert Counter(t for t, _, _ in drawn(graph).elements()) == Counter(
        t for t, _, _ in drawn(graph_of(compile_saga(chain_of(3)))).elements()
    ) + Counter(["reopen", "proceed"])
    mermaid = to_mermaid(graph)
    assert "s_failed --> s_compensating : ↩ reopen ●" in mermaid
    assert "s_compensating --> s_s0__compensating : ↩ compensate (x2) ●" in mermaid


def test_overlay_of_a_halted_run_pushed_forward() -> None:
    """A halt enters the drawing of failed beside its step; pushing forward leaves from it."""
    history = recorded(
        [
            ("start", "pending", "running"),
            ("s0.start", "running", "s0.running"),
            ("s0.succeed", "s0.running", "s0.succeeded"),
            ("s1.start", "s0.succeeded", "s1.running"),
            ("s1.time_out", "s1.running", "s1.in_doubt"),
            ("halt", "s1.in_doubt", "failed"),
            ("s1.push_forward", "failed", "s1.running"),
        ]
    )
    graph = graph_of(compile_saga(chain_of(3, pivot=1)), run=SimpleNamespace(history=history))
    taken = {(e.source, e.label, e.target) for e in graph.edges if e.taken}
    assert ("s1.in_doubt", "halt", "failed@s1") in taken
    assert ("failed@s1", "push_forward", "s1.running") in taken
    assert {n.id for n in graph.nodes if n.visited and n.state == "failed"} == {"failed@s1"}
    assert {n.id for n in graph.nodes if n.current} == {"s1.running"}


def test_mermaid_draws_each_state_once() -> None:
    """Mermaid text shows the machine itself: one compensating, one failed, no rails."""
    compiled = compile_saga(chain_of(6, pivot=4, every=2))
    text = to_mermaid(graph_of(compiled))
    assert text.count('state "compensating" as') == 1
    assert text.count('state "failed" as') == 1
    assert "@" not in text
    edges = [line for line in text.splitlines() if " --> " in line and "[*]" not in line]
    shown = [t for t in compiled.transitions if not hidden(t)]
    assert len(edges) == len(shown)


async def unknown(ctx: object) -> None:
    raise OutcomeUnknownError("no reply")


@st.composite
def chain_runs(draw: st.DrawFn) -> type[Saga]:
    """A chain of 1..7 steps: some compensable (some compensations failing), maybe a pivot,
    maybe one step raising or leaving its outcome unknown."""
    size = draw(st.integers(1, 7))
    pivot = draw(st.none() | st.integers(0, size - 1))
    fails = draw(st.integers(0, size))  # ``size``: no step fails
    failure = draw(st.sampled_from([boom, unknown]))
    steps = []
    for i in range(size):
        before_pivot = pivot is None or i < pivot
        compensation = draw(st.sampled_from([None, undo, boom])) if before_pivot else None
        action = failure if i == fails else act
        retry = Retry(attempts=1)
        steps.append(
            Step(f"s{i}", action, compensate=compensation, pivot=i == pivot, compensate_retry=retry)
        )
    return type(f"Drawn{next(NAMES)}", (Saga,), {"steps": tuple(steps)})


NAMES = itertools.count()


@settings(max_examples=60, deadline=None)
@given(chain_runs())
def test_overlay_colours_exactly_what_a_run_did(saga: type[Saga]) -> None:
    """Any chain run's overlay colours each transition it took once, the states it visited,
    one current state, and a rail for each drawing of compensating it passed on."""
    result = asyncio.run(saga().execute())
    graph = graph_of(compile_saga(saga), run=result)
    history = list(result.history)
    state = {n.id: n.state for n in graph.nodes}
    assert sum(e.taken for e in graph.edges if e.trigger) == len(history)
    assert {state[n.id] for n in graph.nodes if n.visited} == {
        s for h in history for s in (h.source, h.dest)
    }
    assert [state[n.id] for n in graph.nodes if n.current] == [history[-1].dest]
    passed = [n for n in graph.nodes if n.visited and n.state == "compensating"]
    rails = [e for e in graph.edges if e.kind == "rail" and e.taken]
    assert len(rails) == max(0, len(passed) - 1)
