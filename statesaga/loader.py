"""Find a saga class from a ``module:Class`` or ``path/to/file.py:Class`` reference."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from .definition import Saga
from .errors import StatesagaError


class TargetError(StatesagaError):
    """A saga reference cannot be resolved."""


def load_saga(target: str) -> type[Saga]:
    """The saga class ``target`` names (``package.module:SagaClass`` or ``file.py:SagaClass``).

    Raises:
        TargetError: The module cannot be imported, lacks the attribute, or it is no saga.
    """
    module_ref, sep, attr = target.rpartition(":")
    if not sep or not module_ref or not attr:
        raise TargetError(
            f"{target!r} is not a saga reference: write package.module:SagaClass "
            "or path/to/file.py:SagaClass"
        )
    if module_ref.endswith(".py") or "/" in module_ref:
        path = Path(module_ref)
        if not path.is_file():
            raise TargetError(f"cannot import {module_ref!r}: no such file")
        name = f"_statesaga_target_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"cannot import {module_ref!r}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise TargetError(f"cannot import {module_ref!r}: {error}") from error
    else:
        if "" not in sys.path and str(Path.cwd()) not in sys.path:
            sys.path.insert(0, "")  # like `python -m`, resolve modules from the current folder
        try:
            module = importlib.import_module(module_ref)
        except StatesagaError:
            raise
        except Exception as error:
            raise TargetError(f"cannot import {module_ref!r}: {error}") from error
    try:
        obj = getattr(module, attr)
    except AttributeError:
        raise TargetError(f"module {module_ref!r} has no attribute {attr!r}") from None
    if not (isinstance(obj, type) and issubclass(obj, Saga)):
        raise TargetError(f"{target!r} is {type(obj).__name__}, not a subclass of statesaga.Saga")
    return obj
