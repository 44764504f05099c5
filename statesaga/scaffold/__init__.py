"""Render ``templates/`` into a new saga folder that runs and passes its own tests.

``new_saga`` (``generate``) checks the names (``names``) and the target folder (``target``),
renders the templates (``templates``) into a temporary folder, imports the package from there
to draw the saga's diagram (``diagram``), and only then moves the folder into place.
"""

from __future__ import annotations

from ..errors import ScaffoldError as ScaffoldError
from .generate import Scaffolded, new_saga
from .names import DEFAULT_STEPS
from .templates import template_dir, template_variables

__all__ = [
    "DEFAULT_STEPS",
    "ScaffoldError",
    "Scaffolded",
    "new_saga",
    "template_dir",
    "template_variables",
]
