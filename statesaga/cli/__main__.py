"""``python -m statesaga.cli``: the ``statesaga`` command."""

from __future__ import annotations

from . import main

main()
