"""Turn a saga definition into an explicit state machine: plain, deterministic data.

``compile_saga`` (``build``) resolves a saga class into step plans, lays out the machine's
states and edges (``edges``: one chain, or a DAG's regions) and proves it sound; the result is a
``CompiledSaga`` (``compiled``), which the engine reads on every run.
"""

from __future__ import annotations

from .build import compile_saga
from .compiled import MACHINE_VERSION, CompiledSaga, Kind, StepPlan, Transition, condition_name

__all__ = [
    "MACHINE_VERSION",
    "CompiledSaga",
    "Kind",
    "StepPlan",
    "Transition",
    "compile_saga",
    "condition_name",
]
