"""Every error statesaga raises on purpose is one class in `statesaga.errors`, under one root."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import statesaga
from statesaga import errors
from statesaga.errors import StatesagaError

# Simulated faults the test kit raises inside actions: not statesaga's own errors.
SIMULATED = {
    "statesaga.testing.InjectedFault",
    "statesaga.testing.inject.SimulatedCrash",
    "statesaga.testing.inject.InjectedError",
    "statesaga.testing.inject.InjectedNonRetryable",
}


def public_modules() -> list[str]:
    names = [statesaga.__name__]
    for info in pkgutil.walk_packages(statesaga.__path__, prefix="statesaga."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return names


def test_every_public_exception_class_lives_in_errors_under_one_root() -> None:
    """An exception class defined in a public module (outside the test kit's simulated
    faults) is defined in statesaga.errors and derives from StatesagaError; elsewhere it is
    only imported."""
    stray = []
    for name in public_modules():
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if not (inspect.isclass(value) and issubclass(value, BaseException)):
                continue
            home = value.__module__.split(".")
            if attr.startswith("_") or home[0] != "statesaga":
                continue
            if any(part.startswith("_") for part in home):  # a private module's own signal
                continue
            qualified = f"{value.__module__}.{value.__qualname__}"
            if qualified in SIMULATED:
                continue
            if value.__module__ != errors.__name__ or not issubclass(value, StatesagaError):
                stray.append(f"{name}.{attr} ({qualified})")
    assert stray == []


def test_errors_lists_the_branches() -> None:
    """Each layer's root error is importable from statesaga.errors and is a StatesagaError."""
    for name in (
        "DefinitionError",
        "ExecutionError",
        "MachineError",
        "StoreError",
        "TargetError",
        "RenderError",
        "ScaffoldError",
        "BrokerError",
        "InboxError",
        "MissingExtraError",
    ):
        assert issubclass(getattr(errors, name), StatesagaError), name
