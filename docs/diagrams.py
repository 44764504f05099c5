"""Render the diagrams the documentation shows (``make docs``).

Each saga below gets ``docs/diagrams/<name>.dot``, ``.mmd`` and, when Graphviz is installed,
``.svg``. ``tests/test_docs.py`` fails when the committed ``.dot`` or ``.mmd`` text no longer
matches the saga, so a changed saga cannot leave a stale picture behind.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "diagrams"

#: Diagram name -> saga reference (``path/to/file.py:SagaClass``), relative to the repository.
SAGAS = {
    "demo-order-saga": "examples/demo.py:OrderSaga",
}


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from statesaga import compile_saga, render
    from statesaga.loader import load_saga

    OUT.mkdir(parents=True, exist_ok=True)
    for name, target in SAGAS.items():
        compiled = compile_saga(load_saga(str(ROOT / target)))
        (OUT / f"{name}.dot").write_text(compiled.to_dot(), encoding="utf-8")
        (OUT / f"{name}.mmd").write_text(compiled.to_mermaid(), encoding="utf-8")
        if shutil.which("dot"):
            render(compiled, OUT / f"{name}.svg")
        print(f"docs/diagrams/{name}: dot, mmd{', svg' if shutil.which('dot') else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
