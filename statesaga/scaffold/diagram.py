"""The generated saga's diagram: its package imported from the staging folder and drawn.

The package is imported under a private name and forgotten afterwards, so generating a saga
leaves ``sys.modules`` (and the folder the user gets) as they were.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..definition import SagaDefinition
from ..errors import ScaffoldError
from ..render import RenderError, mermaid_of, render

#: Seconds of drawing after which ``new_saga`` reports (through ``progress``) that it is drawing.
NOTICE_AFTER = 0.5


def mermaid(saga: type[SagaDefinition]) -> str:
    """The Mermaid text of ``saga``'s machine, without a trailing newline."""
    return mermaid_of(saga).rstrip("\n")


@contextmanager
def _imported(folder: Path) -> Iterator[Any]:
    """Import the package in ``folder`` under a private name, and forget it afterwards."""
    alias = f"_statesaga_new_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(
        alias, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:  # pragma: no cover - a .py path always has a loader
        raise ScaffoldError(f"cannot import the generated package in {str(folder)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    bytecode = sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # no __pycache__ in the folder the user gets
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.dont_write_bytecode = bytecode
        for key in [k for k in sys.modules if k == alias or k.startswith(f"{alias}.")]:
            del sys.modules[key]


def load_saga(stage: Path, class_name: str) -> type[SagaDefinition]:
    """The saga class ``class_name`` that the package rendered in ``stage`` exports.

    Raises:
        ScaffoldError: The package is missing, does not import, or does not export it.
    """
    if not (stage / "__init__.py").is_file():
        raise ScaffoldError(
            f"the templates make no __init__.py: a saga template must make a package whose "
            f"__init__.py exports {class_name}"
        )
    try:
        with _imported(stage) as package:
            saga = getattr(package, class_name, None)
    except (Exception, SystemExit) as error:  # sys.exit() at import must not end the command
        text = " ".join(str(error).split())  # one line, even for a multi-line error
        text = re.sub(r"_statesaga_new_[0-9a-f]{32}", stage.name, text)  # the private alias
        if isinstance(error, SystemExit):
            text = f"sys.exit({text}) is called when the package is imported"
        raise ScaffoldError(
            f"the generated package does not import: {type(error).__name__}: {text}: "
            "fix the templates"
        ) from None
    if not (isinstance(saga, type) and issubclass(saga, SagaDefinition)):
        raise ScaffoldError(
            f"the generated __init__.py does not export the saga class {class_name}: "
            "fix the templates"
        )
    return saga


def draw(
    saga: type[SagaDefinition], path: Path, progress: Callable[[str], object] | None
) -> str | None:
    """Draw ``saga`` as SVG at ``path``; return why not when Graphviz cannot.

    When drawing lasts past ``NOTICE_AFTER`` seconds, ``progress`` is told what is going on.
    An interruption (Ctrl-C, or SIGTERM turned into an exception) stops Graphviz with it.
    """
    if shutil.which("dot") is None:
        return "Graphviz's dot is not installed: apt-get install graphviz, or brew install graphviz"
    notice = threading.Timer(
        NOTICE_AFTER, lambda: progress and progress(f"drawing {path.name} with Graphviz...")
    )
    notice.daemon = True
    notice.start()
    try:
        render(saga, path, format="svg")
    except RenderError as error:
        return str(error)
    finally:
        notice.cancel()
    return None
