"""Draw the package's module graph by layer: ``docs/diagrams/modules.dot`` and ``.svg``.

``make docs`` runs this file. ``tests/test_module_graph.py`` fails when the committed DOT is not
what the code gives now, or when the SVG was drawn from another DOT: the SVG carries the
sha256 of the DOT it was drawn from (Graphviz versions draw the same DOT differently, so the
SVG itself is not compared).

A box is one module, or the modules of one sub-package that sit in one layer: a sub-package
may span layers, its contract low and its implementations high. An arrow is an import, solid
when the module imports it as it loads, dashed when only inside functions (at first use).
Imports under ``if TYPE_CHECKING:`` are not drawn, nor imports of an enclosing package (``from
.. import __version__``): Python has loaded that package before the module in any case. A
module that no layer names is placed in the lowest layer holding everything it imports, and
drawn dashed until ``LAYERS`` names it.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path

import attrs
from module_imports import PACKAGE, import_graph

ROOT = Path(__file__).resolve().parent.parent
DOT_FILE = ROOT / "docs" / "diagrams" / "modules.dot"
SVG_FILE = DOT_FILE.with_suffix(".svg")
COMMAND = "make docs"


@attrs.frozen
class Layer:
    """A layer: its name, what it holds in a few words, and the modules in it.

    ``modules`` are dotted names; a sub-package's name stands for every module in it that no
    longer name in any layer claims. The package itself stands for its ``__init__`` only.
    """

    name: str
    about: str
    modules: tuple[str, ...]


#: Bottom to top: each layer imports only from itself and the layers below it.
LAYERS: tuple[Layer, ...] = (
    Layer(
        "vocabulary",
        "names, errors, plain values",
        (
            "statesaga.vocabulary",
            "statesaga.errors",
            "statesaga._urls",
            "statesaga.clock",
            "statesaga.ids",
            "statesaga.result",
        ),
    ),
    Layer(
        "definitions and contracts",
        "steps; store records, messages, observer hooks",
        (
            "statesaga.definition",
            "statesaga.store.base",
            "statesaga.store.browse",
            "statesaga.store._codec",
            "statesaga.messaging.message",
            "statesaga.messaging.broker",
            "statesaga.messaging.stats",
            "statesaga.observe.events",
            "statesaga.observe.observer",
        ),
    ),
    Layer(
        "machine",
        "compile, draw, transitions",
        ("statesaga.compiler", "statesaga.render", "statesaga._fsm"),
    ),
    Layer(
        "engine",
        "drive one run",
        (
            "statesaga.engine",
            "statesaga.context",
            "statesaga.observe.registry",
            "statesaga._faults",
        ),
    ),
    Layer(
        "durability and messaging",
        "journal, stores, brokers, outbox, inbox",
        (
            "statesaga.durable",
            "statesaga.json_data",
            "statesaga.loader",
            "statesaga.store",
            "statesaga.messaging",
        ),
    ),
    Layer(
        "entry points",
        "public API, worker, relay, CLI, inspector, observers, scaffold, test kit",
        (
            "statesaga",
            "statesaga.saga",
            "statesaga.handle",
            "statesaga.worker",
            "statesaga.bridge",
            "statesaga.messaging.relay",
            "statesaga.cli",
            "statesaga.observe",
            "statesaga.scaffold",
            "statesaga.testing",
            "statesaga.ui",
        ),
    ),
)

#: Pale fills, one per layer from the bottom; more layers than colours reuse them.
FILLS = ("#f2f2f2", "#fdf3e1", "#e8f1fb", "#eaf6ea", "#f6ecf7", "#fbeaea")


def encloses(package: str, module: str) -> bool:
    """Whether ``module`` lies inside ``package`` (which Python imports before it)."""
    return module.startswith(package + ".")


def declared(module: str, layers: Iterable[Layer], root: str) -> int | None:
    """The number of the layer naming ``module`` (the longest name that covers it wins)."""
    best, found = -1, None
    for number, layer in enumerate(layers):
        for name in layer.modules:
            covers = module == name or (name != root and encloses(name, module))
            if covers and len(name) > best:
                best, found = len(name), number
    return found


def placed(
    edges: Mapping[str, Iterable[str]], layers: Iterable[Layer], root: str
) -> dict[str, tuple[int, bool]]:
    """Each module's layer number, and whether a layer names it.

    A module no layer names goes to the lowest layer that holds everything it imports.
    """
    layers = tuple(layers)
    found: dict[str, tuple[int, bool]] = {}

    def place(module: str, seen: frozenset[str]) -> int:
        if module in found:
            return found[module][0]
        number = declared(module, layers, root)
        if number is not None:
            found[module] = (number, True)
            return number
        below = [t for t in sorted(edges[module]) if t not in seen and not encloses(t, module)]
        number = max((place(t, seen | {module}) for t in below), default=0)
        found[module] = (number, False)
        return number

    for module in sorted(edges):
        place(module, frozenset())
    return found


def upward(imports: Mapping[str, Iterable[str]], layers: Iterable[Layer], root: str) -> list[str]:
    """Every import of a module from a layer above its own, as ``importer -> imported``."""
    where = placed(imports, layers, root)
    return [
        f"{module} ({where[module][0]}) -> {target} ({where[target][0]})"
        for module, targets in sorted(imports.items())
        for target in sorted(targets)
        if not encloses(target, module) and where[target][0] > where[module][0]
    ]


def group(module: str, names: Iterable[str]) -> str:
    """The box ``module`` is drawn in: its top sub-package, or itself when it is in none."""
    top = ".".join(module.split(".")[:2])
    return top if any(encloses(top, name) for name in names) else module


def reduced(arrows: Mapping[tuple[str, str], bool]) -> dict[tuple[str, str], bool]:
    """``arrows`` without those a longer path already joins (their transitive reduction).

    Each arrow is dropped, in order, only if the arrows still kept join its ends another way,
    so what reaches what is unchanged.
    """
    kept = dict(sorted(arrows.items()))
    for source, target in list(kept):
        out: dict[str, list[str]] = {}
        for a, b in kept:
            if (a, b) != (source, target):
                out.setdefault(a, []).append(b)
        seen, todo = {source}, [source]
        while todo:
            for b in out.get(todo.pop(), ()):
                if b not in seen:
                    seen.add(b)
                    todo.append(b)
        if target in seen:
            del kept[source, target]
    return kept


def _ident(number: int, box: str) -> str:
    return f"{box}@{number}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _label(box: str, members: list[str], root: str, package: bool) -> str:
    if box == root:
        return f"{root}/__init__.py\n(public API)"
    short = box.removeprefix(root + ".").replace(".", "/")
    if not package:
        return f"{short}.py"
    inside = ", ".join(m.removeprefix(box + ".") if m != box else "__init__" for m in members)
    return "\n".join([f"{short}/", *textwrap.wrap(inside, 30)])


HEADER = (
    '  graph [rankdir=TB, newrank=true, nodesep=0.25, ranksep=0.5, fontname="Helvetica",'
    " fontsize=12];",
    '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica",'
    ' fontsize=10, margin="0.12,0.06"];',
    '  edge [color="#00000077", arrowsize=0.6];',
)


def dot(
    imports: Mapping[str, Mapping[str, bool]],
    layers: Iterable[Layer] = LAYERS,
    root: str = PACKAGE.name,
) -> str:
    """The DOT text of the module graph ``imports`` (module -> imported -> only lazily)."""
    layers = tuple(layers)
    where = placed(imports, layers, root)
    names = set(imports)

    def box(module: str) -> tuple[int, str]:
        return where[module][0], group(module, names)

    members: dict[tuple[int, str], list[str]] = {}
    arrows: dict[tuple[str, str], bool] = {}
    for module, targets in sorted(imports.items()):
        members.setdefault(box(module), []).append(module)
        for target, lazy in sorted(targets.items()):
            if not encloses(target, module) and box(module) != box(target):
                key = (_ident(*box(module)), _ident(*box(target)))
                arrows[key] = arrows.get(key, True) and lazy

    lines = [
        f"// The modules of {root} by layer, drawn from their imports by tests/module_graph.py.",
        f"// Do not edit: run `{COMMAND}`.",
        "digraph modules {",
        *HEADER,
    ]
    rows: dict[int, list[str]] = {}
    for number in reversed(range(len(layers))):
        layer = layers[number]
        lines += [
            f"  subgraph cluster_layer{number} {{",
            f"    label={_quote(f'{number}  {layer.name}: {layer.about}')};",
            '    labeljust=l; style="rounded,filled"; color="#bbbbbb";'
            f' fillcolor="{FILLS[number % len(FILLS)]}";',
        ]
        row = sorted(name for n, name in members if n == number)
        for name in row:
            inside = members[number, name]
            package = any(encloses(name, other) for other in names)
            attributes = [f"label={_quote(_label(name, inside, root, package))}"]
            if not all(where[m][1] for m in inside):
                attributes.append('style="rounded,filled,dashed"')
                unnamed = ", ".join(m for m in inside if not where[m][1])
                attributes.append(f"tooltip={_quote(f'placed by its imports: {unnamed}')}")
            elif package:
                attributes.append(f"tooltip={_quote(', '.join(inside))}")
            lines.append(f"    {_quote(_ident(number, name))} [{', '.join(attributes)}];")
        lines.append("  }")
        rows[number] = [_quote(_ident(number, name)) for name in row]
    # Between two layers, an invisible point that every box of the upper one points to and
    # that points to every box of the lower one: it stacks the layers in order (empty ones
    # too, through the chain of points) and leaves imports inside a layer free to go down it.
    for number in reversed(range(1, len(layers))):
        gap = _quote(f"{number} over {number - 1}")
        lines.append(f"  {gap} [shape=point, style=invis, width=0];")
        if number + 1 < len(layers):
            lines.append(f"  {_quote(f'{number + 1} over {number}')} -> {gap} [style=invis];")
        lines += [f"  {ident} -> {gap} [style=invis];" for ident in rows[number]]
        lines += [f"  {gap} -> {ident} [style=invis];" for ident in rows[number - 1]]
    for (source, target), lazy in reduced(arrows).items():
        style = " [style=dashed]" if lazy else ""
        lines.append(f"  {_quote(source)} -> {_quote(target)}{style};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def sha256(text: str) -> str:
    """The hex sha256 of ``text`` as UTF-8: what the SVG records of the DOT it came from."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def svg(text: str) -> str:
    """``text`` drawn by Graphviz's ``dot``, marked with the DOT's sha256."""
    import graphviz

    drawn: str = graphviz.Source(text).pipe(format="svg", encoding="utf-8")
    mark = f"<!-- drawn from {DOT_FILE.name}, sha256 {sha256(text)} -->"
    # The XML declaration must stay first.
    head, newline, rest = drawn.partition("\n")
    return f"{head}{newline}{mark}\n{rest}" if head.startswith("<?xml") else f"{mark}\n{drawn}"


def recorded_sha256(svg_text: str) -> str | None:
    """The sha256 of the DOT an SVG written by ``svg`` was drawn from."""
    found = re.search(r"<!-- drawn from \S+, sha256 ([0-9a-f]{64}) -->", svg_text)
    return found.group(1) if found else None


def main() -> int:
    text = dot(import_graph())
    DOT_FILE.parent.mkdir(parents=True, exist_ok=True)
    DOT_FILE.write_text(text, encoding="utf-8")
    written = [DOT_FILE]
    if shutil.which("dot") is not None:
        SVG_FILE.write_text(svg(text), encoding="utf-8")
        written.append(SVG_FILE)
    else:
        print("Graphviz's dot is not installed: modules.svg was left as it was")
    print(f"modules: {', '.join(str(p.relative_to(ROOT)) for p in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
