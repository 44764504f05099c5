"""Drawing sagas with waits: chains and DAGs in DOT, Mermaid and SVG, and runs through a wait."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest
from helpers import check_golden

from statesaga import Saga, SagaResult, SagaStatus, Step, Wait, compile_saga
from statesaga.render import dot_of, graph_of, mermaid_of, render, svg_of
from statesaga.render.graph import Edge, Graph, duration
from statesaga.testing import FakeClock

HAS_DOT = shutil.which("dot") is not None


async def act(ctx: object) -> None:
    return None


async def undo(ctx: object) -> None:
    return None


async def boom(ctx: object) -> None:
    raise ValueError("out of stock")


class Booking(Saga):
    """A chain: reserve, wait an hour for the payment, ship."""

    steps = (
        Step("reserve", act, compensate=undo),
        Wait("paid", timeout=3600),
        Step("ship", act),
    )


class Cooling(Saga):
    """A chain whose wait is a durable sleep: its timeout lets the run continue."""

    steps = (
        Step("order", act),
        Wait("cool_off", timeout=90, on_timeout="continue"),
        Step("ship", act),
    )


class Payment(Saga):
    """A DAG: ship once the reservation is made and the payment (no timeout) has come."""

    steps = (
        Step("reserve", act, compensate=undo),
        Wait("paid"),
        Step("ship", act, depends_on=["reserve", "paid"]),
    )


class SoldOut(Saga):
    """The DAG again, with the reservation failing while the payment is awaited."""

    steps = (
        Step("reserve", boom, compensate=undo),
        Wait("paid"),
        Step("ship", act, depends_on=["reserve", "paid"]),
    )


class Pivoted(Saga):
    """A chain with a wait after its pivot: a timeout halts the run."""

    steps = (Step("charge", act, pivot=True), Wait("delivered", timeout=60), Step("close", act))


SAGAS = {"chain": Booking, "sleep": Cooling, "dag": Payment, "pivot": Pivoted}


def edge(graph: Graph, trigger: str, source: str | None = None) -> Edge:
    """The one edge of ``graph`` drawing ``trigger`` (from ``source``, when given)."""
    found = [e for e in graph.edges if e.trigger == trigger and source in (None, e.source)]
    assert len(found) == 1, found
    return found[0]


def taken(graph: Graph) -> set[str]:
    """The triggers of the transitions an overlay marks taken."""
    return {e.trigger for e in graph.edges if e.taken and e.trigger}


def check_overlay(graph: Graph, result: SagaResult) -> None:
    """The overlay marks exactly what the run did: each transition once, its states, its end."""
    history = list(result.history)
    state = {n.id: n.state for n in graph.nodes}
    assert sum(e.taken for e in graph.edges if e.trigger) == len(history)
    assert {state[n.id] for n in graph.nodes if n.visited} == {
        s for h in history for s in (h.source, h.dest)
    }
    assert history[-1].dest in {state[n.id] for n in graph.nodes if n.current}


async def signalled(saga: type[Saga]) -> SagaResult:
    """A run of ``saga`` whose wait ``paid`` is signalled."""
    run = await saga().start(clock=FakeClock())
    await run.signal("paid", {"amount": 1})
    return await run.result()


@pytest.mark.parametrize("saga", SAGAS.values(), ids=SAGAS.keys())
def test_every_edge_joins_drawn_states(saga: type[Saga]) -> None:
    """No edge of a picture with a wait points at a state the wait does not have."""
    graph = graph_of(saga)
    nodes = {n.id for n in graph.nodes}
    assert {n for e in graph.edges for n in (e.source, e.target)} <= nodes
    assert not any(
        ".running" in n and n.startswith(("paid", "cool_off", "delivered")) for n in nodes
    )


@pytest.mark.parametrize(("saga", "name"), [(Booking, "chain"), (Payment, "dag")])
def test_waits_match_golden(saga: type[Saga], name: str) -> None:
    """The DOT and Mermaid text of a chain and of a DAG with a wait match the golden files."""
    check_golden(f"render_{name}_wait.dot", dot_of(saga))
    check_golden(f"render_{name}_wait.mmd", mermaid_of(saga))


def test_dot_draws_the_waiting_state_distinctly() -> None:
    """Graphviz draws a waiting state as a teal dashed hexagon labelled with its timeout."""
    dot = dot_of(Booking)
    line = next(x for x in dot.splitlines() if x.strip().startswith('"paid.waiting" ['))
    assert 'label="paid\\n◷ waiting\\n(timeout 1h)"' in line
    assert 'shape="hexagon"' in line
    assert 'style="filled,dashed"' in line
    assert 'fillcolor="#e0f2f1"' in line
    assert "hexagon" not in next(
        x for x in dot.splitlines() if x.strip().startswith('"paid.succeeded" [')
    )


def test_dot_labels_what_a_wait_s_edges_do() -> None:
    """The signal edge says a signal arrives, the timeout what it does, fail that it gave up."""
    graph = graph_of(Booking)
    assert edge(graph, "paid.wait").label == "wait"
    assert edge(graph, "paid.signal").label == "✉ signal arrives"
    assert edge(graph, "paid.signal").main
    assert edge(graph, "paid.time_out").label == "time_out → fails"
    assert edge(graph, "paid.time_out").kind == "failure"
    assert edge(graph, "paid.fail").label == "fail (given up)"
    sleep = edge(graph_of(Cooling), "cool_off.time_out")
    assert (sleep.label, sleep.kind, sleep.target) == (
        "time_out → continues",
        "forward",
        "cool_off.succeeded",
    )


def test_a_wait_without_timeout_has_no_timeout_edge() -> None:
    """A wait that waits for ever is labelled so, and is drawn without a timeout edge."""
    graph = graph_of(Payment)
    assert "paid.time_out" in {t.trigger for t in compile_saga(Payment).transitions}
    assert "paid.time_out" not in {e.trigger for e in graph.edges}
    assert next(n.label for n in graph.nodes if n.id == "paid.waiting") == "◷ waiting\n(no timeout)"


def test_legend_shows_a_wait_only_when_the_saga_has_one() -> None:
    """The legend has a waiting sample (DOT) or line (Mermaid) exactly when a step waits."""

    class Plain(Saga):
        steps = (Step("a", act), Step("b", act))

    assert '"legend.wait" [label="◷ waiting for a signal\\n(or its timeout)"' in dot_of(Booking)
    assert "legend.wait" not in dot_of(Plain)
    assert "◷ = waiting for a signal, ✉ = the signal arrives" in mermaid_of(Booking)
    assert "◷" not in mermaid_of(Plain)
    assert "classDef waiting" not in mermaid_of(Plain)


def test_mermaid_marks_waits() -> None:
    """Mermaid gives the waiting state the class waiting and labels the wait's edges."""
    text = mermaid_of(Booking)
    assert 'state "paid ◷ waiting (timeout 1h)" as s_paid__waiting' in text
    assert "    classDef waiting fill:#e0f2f1,stroke:#00897b,stroke-dasharray:5 3" in text
    assert "    class s_paid__waiting waiting" in text
    assert "s_reserve__succeeded --> s_paid__waiting : wait" in text
    assert "s_paid__waiting --> s_paid__succeeded : ✉ signal arrives" in text
    assert "s_paid__waiting --> s_paid__failed : ✗ time_out → fails" in text
    assert "s_paid__waiting --> s_paid__failed : ✗ fail (given up)" in text


def test_dag_forks_into_the_wait_and_joins_from_it() -> None:
    """In a DAG the saga forks into the waiting state, and its success joins the next step."""
    text = mermaid_of(Payment)
    assert 'state "step paid (wait)" as s_region__paid {' in text
    assert "s_running --> s_paid__waiting : ⋔ fork" in text
    assert "s_paid__succeeded --> s_ship__running : ⋔" in text
    assert "class s_paid__waiting waiting" in text
    dot = dot_of(Payment)
    assert '"running" -> "paid.waiting" [color="#7b7b7b"' in dot
    assert '"paid.pending" -> "paid.waiting"' in dot


def test_chain_puts_the_wait_in_its_column() -> None:
    """A chain's waiting state heads its column, over the compensating drawing before it."""
    graph = graph_of(Booking)
    assert ("paid.waiting", "compensating@reserve") in graph.columns
    assert ("paid.succeeded", "paid.failed") in graph.columns


async def test_a_wait_after_the_pivot_halts_beside_itself() -> None:
    """Past the pivot, a timed-out wait halts the run in the drawing of failed beside it."""
    graph = graph_of(Pivoted)
    assert edge(graph, "halt", "delivered.failed").target == "failed@delivered"
    assert "delivered.push_forward" not in {e.trigger for e in graph.edges}
    result = await Pivoted().execute(clock=FakeClock())
    assert result.status == SagaStatus.FAILED
    graph = graph_of(Pivoted, run=result)
    check_overlay(graph, result)
    assert {"delivered.time_out", "halt"} <= taken(graph)
    assert {n.id for n in graph.nodes if n.current} == {"failed@delivered"}


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (3600, "1h"),
        (5400, "1h30m"),
        (90, "1m30s"),
        (86400 + 7200, "1d2h"),
        (0.01, "0.01s"),
        (45, "45s"),
    ],
)
def test_timeouts_read_as_durations(seconds: float, text: str) -> None:
    """A wait's timeout is shown as a person writes a duration."""
    assert duration(seconds) == text


@pytest.mark.skipif(not HAS_DOT, reason="Graphviz 'dot' is not installed")
@pytest.mark.parametrize("saga", [Booking, Payment], ids=["chain", "dag"])
def test_svg_draws_the_wait(saga: type[Saga]) -> None:
    """The SVG of a chain and of a DAG with a wait draws the teal waiting hexagon."""
    svg = svg_of(saga)
    assert "<svg" in svg
    assert "◷ waiting" in svg
    assert 'fill="#e0f2f1"' in svg
    assert "signal arrives" in svg


async def test_overlay_of_a_signalled_run() -> None:
    """A signalled run takes wait and signal, neither the timeout nor giving up, and completes."""
    result = await signalled(Booking)
    assert result.status == SagaStatus.COMPLETED
    graph = graph_of(Booking, run=result)
    check_overlay(graph, result)
    assert {"paid.wait", "paid.signal"} <= taken(graph)
    assert {"paid.time_out", "paid.fail"}.isdisjoint(taken(graph))
    assert {n.id for n in graph.nodes if n.current} == {"completed"}
    assert "s_paid__waiting --> s_paid__succeeded : ✉ signal arrives ●" in mermaid_of(
        Booking, run=result
    )


async def test_overlay_of_a_timed_out_run() -> None:
    """A timed-out wait fails, and the run aborts into compensating beside the step to undo."""
    result = await Booking().execute(clock=FakeClock())
    assert [h.trigger for h in result.history][3:6] == ["paid.wait", "paid.time_out", "abort"]
    graph = graph_of(Booking, run=result)
    check_overlay(graph, result)
    timed_out = edge(graph, "paid.time_out")
    assert timed_out.taken == 1
    assert "WaitTimeoutError" in timed_out.note
    assert edge(graph, "abort", "paid.failed").target == "compensating@reserve"
    assert edge(graph, "abort", "paid.failed").taken == 1
    assert "paid.signal" not in taken(graph)
    mermaid = mermaid_of(Booking, run=result)
    assert "s_paid__waiting --> s_paid__failed : ✗ time_out → fails (WaitTimeoutError" in mermaid
    dot = dot_of(Booking, run=result)
    line = next(
        x
        for x in dot.splitlines()
        if x.strip().startswith('"paid.waiting" -> "paid.failed"') and "time_out" in x
    )
    assert 'penwidth="2.5"' in line


async def test_overlay_of_a_run_that_slept() -> None:
    """A wait whose timeout continues is drawn taken to succeeded, then on to the next step."""
    result = await Cooling().execute(clock=FakeClock())
    assert result.status == SagaStatus.COMPLETED
    graph = graph_of(Cooling, run=result)
    check_overlay(graph, result)
    assert {"cool_off.time_out", "ship.start"} <= taken(graph)
    assert "s_cool_off__waiting --> s_cool_off__succeeded : time_out → continues ●" in mermaid_of(
        Cooling, run=result
    )


async def test_overlay_of_a_wait_given_up() -> None:
    """A wait still waiting at the saga's deadline is given up: fail (given up) is taken."""

    class Late(Booking):
        deadline = 60

    result = await Late().execute(clock=FakeClock())
    graph = graph_of(Late, run=result)
    check_overlay(graph, result)
    assert edge(graph, "paid.fail").taken == 1
    assert edge(graph, "paid.fail").note.startswith("SagaDeadlineError")
    assert "s_paid__waiting --> s_paid__failed : ✗ fail (given up) (SagaDeadlineError" in (
        mermaid_of(Late, run=result)
    )
    assert "paid.time_out" not in taken(graph)
    assert {n.id for n in graph.nodes if n.current} == {"compensated"}


async def test_dag_overlays_of_runs_through_a_wait(tmp_path: Path) -> None:
    """In a DAG, a signalled wait and one given up when a sibling fails are drawn taken."""
    done = await signalled(Payment)
    graph = graph_of(Payment, run=done)
    check_overlay(graph, done)
    assert {"paid.wait", "paid.signal", "ship.start", "complete"} <= taken(graph)
    assert Counter(n.id for n in graph.nodes if n.current) == Counter(
        ["completed", "reserve.succeeded", "paid.succeeded", "ship.succeeded"]
    )
    given_up = await SoldOut().execute()
    assert "paid.fail" in [h.trigger for h in given_up.history]
    graph = graph_of(SoldOut, run=given_up)
    check_overlay(graph, given_up)
    assert edge(graph, "paid.fail").taken == 1
    assert "paid.failed" in {n.id for n in graph.nodes if n.current}
    text = render(SoldOut, tmp_path / "sold_out.mmd", run=given_up).read_text()
    assert (
        "s_paid__waiting --> s_paid__failed : ✗ fail (given up) (ValueError  out of stock) ●"
        in text
    )
    assert "class s_paid__waiting waiting" in text
