"""Render the diagrams the documentation shows (``make docs``).

Each saga below gets ``docs/diagrams/<name>.dot``, ``.mmd`` and, when Graphviz is installed,
``.svg``. An example's saga also gets its SVG copied to ``examples/<folder>/diagram.svg`` and
its Mermaid text written into its README between the markers below. ``tests/test_docs.py``
fails when any committed text no longer matches the saga, so a changed saga cannot leave a
stale picture behind.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from statesaga import CompiledSaga

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "diagrams"

#: Diagram name -> saga reference: ``path/to/file.py:SagaClass`` relative to the repository,
#: or ``package.module:SagaClass`` importable from it.
SAGAS = {
    "demo-order-saga": "examples/demo.py:OrderSaga",
    "order-processing": "examples.order_processing:OrderProcessingSaga",
    "travel-booking": "examples.travel_booking:TravelBookingSaga",
    "trade-execution": "examples.trade_execution:TradeExecutionSaga",
    "payment-processing": "examples.payment_processing:PaymentSaga",
}

#: Diagram name -> the example folder that shows it.
EXAMPLES = {
    "order-processing": ROOT / "examples" / "order_processing",
    "travel-booking": ROOT / "examples" / "travel_booking",
    "trade-execution": ROOT / "examples" / "trade_execution",
    "payment-processing": ROOT / "examples" / "payment_processing",
}

BEGIN = "<!-- diagram: written by `make docs` -->"
END = "<!-- end of diagram -->"
_BLOCK = re.compile(f"{re.escape(BEGIN)}.*?{re.escape(END)}", re.S)


def compiled(name: str) -> CompiledSaga:
    """The compiled machine of diagram ``name``'s saga."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from statesaga import compile_saga
    from statesaga.loader import load_saga

    target = SAGAS[name]
    path, _, _ = target.rpartition(":")
    return compile_saga(load_saga(str(ROOT / target) if path.endswith(".py") else target))


def texts(name: str, machine: CompiledSaga) -> dict[Path, str]:
    """Every text file diagram ``name`` owns, and what it must contain."""
    from statesaga.render import dot_of, mermaid_of

    files = {
        OUT / f"{name}.dot": dot_of(machine),
        OUT / f"{name}.mmd": mermaid_of(machine),
    }
    if name in EXAMPLES:
        readme = EXAMPLES[name] / "README.md"
        block = f"{BEGIN}\n```mermaid\n{mermaid_of(machine).rstrip()}\n```\n{END}"
        current = readme.read_text(encoding="utf-8")
        if not _BLOCK.search(current):
            raise ValueError(f"{readme}: add the lines {BEGIN} and {END} where the diagram goes")
        files[readme] = _BLOCK.sub(lambda _: block, current)
    return files


def svgs(name: str) -> list[Path]:
    """The SVG files diagram ``name`` owns (the first one is rendered, the others copied)."""
    found = [OUT / f"{name}.svg"]
    if name in EXAMPLES:
        found.append(EXAMPLES[name] / "diagram.svg")
    return found


def main() -> int:
    from statesaga import render

    OUT.mkdir(parents=True, exist_ok=True)
    drawn = shutil.which("dot") is not None
    for name in SAGAS:
        machine = compiled(name)
        written = []
        for path, text in texts(name, machine).items():
            path.write_text(text, encoding="utf-8")
            written.append(path)
        if drawn:
            first, *copies = svgs(name)
            render(machine, first)
            for copy in copies:
                shutil.copyfile(first, copy)
            written += [first, *copies]
        print(f"{name}: {', '.join(str(p.relative_to(ROOT)) for p in written)}")
    if not drawn:
        print("Graphviz's dot is not installed: the SVG files were left as they were")
    return 0


if __name__ == "__main__":
    sys.exit(main())
