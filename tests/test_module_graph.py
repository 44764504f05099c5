"""The module graph docs/design.md shows: current, drawn from the code, and layered."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import pytest
from module_graph import (
    COMMAND,
    DOT_FILE,
    LAYERS,
    ROOT,
    SVG_FILE,
    Layer,
    dot,
    placed,
    recorded_sha256,
    reduced,
    sha256,
    svg,
    upward,
)
from module_imports import import_graph

STALE = f"is stale: run `{COMMAND}` (or `python tests/module_graph.py`) and commit the result"

#: Two layers of a made-up package ``pkg``.
TWO = (
    Layer("low", "below", ("pkg.low", "pkg.sub.base")),
    Layer("high", "above", ("pkg", "pkg.high", "pkg.sub")),
)


def write(folder: Path, files: dict[str, str]) -> Path:
    """A package made of ``files`` (path -> source) under ``folder``; its path."""
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder / "pkg"


def test_committed_dot_is_what_the_code_draws() -> None:
    """docs/diagrams/modules.dot is the graph of the modules as they are now."""
    where = DOT_FILE.relative_to(ROOT)
    assert DOT_FILE.exists(), f"{where} is missing: run `{COMMAND}`"
    assert DOT_FILE.read_text(encoding="utf-8") == dot(import_graph()), f"{where} {STALE}"


def test_committed_svg_was_drawn_from_the_current_dot() -> None:
    """The SVG records the sha256 of the DOT it was drawn from, and that DOT is today's."""
    where = SVG_FILE.relative_to(ROOT)
    assert SVG_FILE.exists(), f"{where} is missing: run `{COMMAND}`"
    drawn_from = recorded_sha256(SVG_FILE.read_text(encoding="utf-8"))
    assert drawn_from == sha256(dot(import_graph())), f"{where} {STALE}"


def test_every_import_goes_to_the_same_layer_or_one_below() -> None:
    """No module imports from a layer above its own (lazy imports included)."""
    assert upward(import_graph(), LAYERS, "statesaga") == []


def test_the_layer_check_sees_an_import_from_above() -> None:
    """The check itself: a low module importing a high one is reported."""
    imports = {"pkg": {"pkg.low": False}, "pkg.low": {"pkg.high": True}, "pkg.high": {}}
    assert upward(imports, TWO, "pkg") == ["pkg.low (0) -> pkg.high (1)"]


def test_a_module_no_layer_names_sits_above_what_it_imports_drawn_dashed() -> None:
    """An unnamed module goes to the highest layer among its imports (the lowest that can
    hold it), or the bottom one when it imports nothing; its box is dashed."""
    imports = {
        "pkg": {},
        "pkg.low": {},
        "pkg.new": {"pkg.low": False, "pkg.top": True},
        "pkg.top": {},
        "pkg.leaf": {},
    }
    layers = (TWO[0], Layer("high", "above", ("pkg", "pkg.top")))
    where = placed(imports, layers, "pkg")
    assert where["pkg"] == (1, True)
    assert where["pkg.new"] == (1, False)
    assert where["pkg.leaf"] == (0, False)
    assert where["pkg.top"] == (1, True)
    text = dot(imports, layers, "pkg")
    assert '"pkg.new@1" [label="new.py", style="rounded,filled,dashed"' in text
    assert '"pkg.top@1" [label="top.py"];' in text


def test_the_package_name_stands_for_its_init_only() -> None:
    """A layer naming the package itself does not claim the modules inside it."""
    where = placed({"pkg": {}, "pkg.other": {}}, TWO, "pkg")
    assert where == {"pkg": (1, True), "pkg.other": (0, False)}


def test_a_sub_package_is_one_box_per_layer_it_spans(tmp_path: Path) -> None:
    """A new sub-package's modules share a box in each layer, listed in it; imports inside a
    box and imports of an enclosing package are not drawn."""
    package = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low.py": "",
            "pkg/sub/__init__.py": "from .. import low\n",
            "pkg/sub/base.py": "from .. import low\nfrom .. import sub\n",
            "pkg/sub/impl.py": "from . import base\nfrom .. import low\n",
            "pkg/sub/more.py": "from .impl import thing\n",
        },
    )
    text = dot(import_graph(package), TWO, "pkg")
    assert '"pkg.sub@0" [label="sub/\\nbase", tooltip="pkg.sub.base"];' in text
    assert '"pkg.sub@1" [label="sub/\\n__init__, impl, more"' in text
    arrows = [line.strip() for line in text.splitlines() if "->" in line and "invis" not in line]
    # sub@1 -> low is implied by sub@1 -> sub@0 -> low, so it is not drawn again.
    assert arrows == ['"pkg.sub@0" -> "pkg.low@0";', '"pkg.sub@1" -> "pkg.sub@0";']


def test_an_arrow_is_dashed_only_when_every_import_behind_it_is_lazy(tmp_path: Path) -> None:
    """Imports inside functions draw a dashed arrow; one import at load time makes it solid;
    imports under TYPE_CHECKING draw none."""
    package = write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/low.py": "",
            "pkg/base.py": "",
            "pkg/lazy.py": "def f():\n    from . import low\n",
            "pkg/both.py": "from . import low\ndef f():\n    from . import low\n",
            "pkg/typing.py": "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from . import base\n",
        },
    )
    layers = (Layer("low", "below", ("pkg.low", "pkg.base")), Layer("high", "above", ("pkg",)))
    text = dot(import_graph(package), layers, "pkg")
    assert '"pkg.lazy@0" -> "pkg.low@0" [style=dashed];' in text
    assert '"pkg.both@0" -> "pkg.low@0";' in text
    assert '"pkg.typing@0" ->' not in text


def test_reduction_drops_only_arrows_another_path_implies() -> None:
    """a -> c goes when a -> b -> c is drawn; what reaches what stays the same."""
    arrows = {("a", "b"): False, ("b", "c"): False, ("a", "c"): True, ("c", "d"): False}
    assert list(reduced(arrows)) == [("a", "b"), ("b", "c"), ("c", "d")]
    assert reduced({("a", "b"): False, ("b", "a"): False}) == {
        ("a", "b"): False,
        ("b", "a"): False,
    }


def test_the_text_does_not_depend_on_the_order_modules_are_found() -> None:
    """The same graph, listed in another order, gives the same DOT text."""
    imports = import_graph()
    shuffled = list(imports.items())
    random.Random(7).shuffle(shuffled)
    assert dot(dict(shuffled)) == dot(imports)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_the_svg_records_the_dot_it_was_drawn_from() -> None:
    """A drawn SVG starts with its XML declaration and carries its DOT's sha256."""
    text = "digraph g { a -> b; }\n"
    drawn = svg(text)
    assert drawn.startswith("<?xml")
    assert recorded_sha256(drawn) == sha256(text)
    assert recorded_sha256(svg("digraph g { a -> c; }\n")) != sha256(text)
