from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import run_cli, write_orders_saga

from statesaga import Retry, Saga, Step, compile_saga
from statesaga.errors import StatesagaError
from statesaga.loader import load_saga
from statesaga.render import RenderError, graph_of, render
from statesaga.render.dot import to_dot
from statesaga.render.mermaid import to_mermaid
from statesaga.store import TransitionRecord

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = "STATESAGA_REGENERATE_GOLDEN"
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


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get(REGENERATE):
        path.write_text(text, encoding="utf-8")
    hint = f"{path} is stale or missing: check the change, then rerun with {REGENERATE}=1"
    assert path.exists(), hint
    assert text == path.read_text(encoding="utf-8"), hint


@pytest.mark.parametrize(
    ("saga", "name"), [(Checkout, "render_chain"), (Fanout, "render_dag")], ids=["chain", "dag"]
)
def test_dot_matches_golden(saga: type[Saga], name: str) -> None:
    """The DOT text of a chain and of a DAG matches the committed golden file."""
    check_golden(f"{name}.dot", compile_saga(saga).to_dot())


@pytest.mark.parametrize(
    ("saga", "name"), [(Checkout, "render_chain"), (Fanout, "render_dag")], ids=["chain", "dag"]
)
def test_mermaid_matches_golden(saga: type[Saga], name: str) -> None:
    """The Mermaid text of a chain and of a DAG matches the committed golden file."""
    check_golden(f"{name}.mmd", compile_saga(saga).to_mermaid())


def test_text_output_is_deterministic() -> None:
    """Building the DOT and Mermaid text twice gives identical strings."""
    compiled = compile_saga(Fanout)
    assert to_dot(graph_of(compiled)) == to_dot(graph_of(compiled))
    assert to_mermaid(graph_of(compiled)) == to_mermaid(graph_of(compiled))


def test_visual_language() -> None:
    """Compensations are dashed, failures red, finals doublecircle, the pivot marked."""
    dot = compile_saga(Checkout).to_dot()
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
    dot = compile_saga(Fanout).to_dot()
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
def test_repr_svg_for_jupyter() -> None:
    """A compiled saga shows itself as SVG in Jupyter."""
    svg = compile_saga(Checkout)._repr_svg_()
    assert svg is not None
    assert "<svg" in svg


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


def test_chain_is_drawn_as_a_grid_with_bundled_hub_edges() -> None:
    """Each step's states share columns; a plain chain picture bundles the hub's edges."""
    graph = graph_of(compile_saga(Checkout))
    assert ("reserve.running", "reserve.compensating") in graph.columns
    assert graph.bundle
    text = to_dot(graph)
    assert 'concentrate="true"' in text
    assert '{ rank=same; "charge.succeeded"; "charge.failed"; "charge.in_doubt"; }' in text
    dag = graph_of(compile_saga(Fanout))
    assert dag.columns == ()
    assert not dag.bundle


async def test_overlay_never_bundles_edges() -> None:
    """Bundled edges would hide which one a run took: an overlay draws each on its own."""
    result = await Checkout().execute()
    graph = graph_of(compile_saga(Checkout), run=result)
    assert graph.columns
    assert not graph.bundle
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
