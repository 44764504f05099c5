"""Run ids: unique across processes and hosts, cheap to make."""

from __future__ import annotations

import itertools
import os

# 80 random bits per process (drawn again in a forked child) and a 48-bit counter: ids never
# repeat within a process, and two processes share a prefix with odds of about 2^-80 per pair.
# A fresh os.urandom(16) per run cost three times as much, on the path of every run.
_prefix = os.urandom(10).hex()
_counter = itertools.count()


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(10).hex()
    _counter = itertools.count()


os.register_at_fork(after_in_child=_reseed)


def new_run_id() -> str:
    """A new run id: 32 lowercase hex characters."""
    return f"{_prefix}{next(_counter) & 0xFFFFFFFFFFFF:012x}"


def run_id_or_new(saga_id: str | None) -> str:
    """``saga_id`` as given, or a new run id for ``None``.

    Raises:
        ValueError: ``saga_id`` is not a non-empty string (an empty one would silently get
            a random id, and a caller keying runs by its own ids would never find the run).
    """
    if saga_id is None:
        return new_run_id()
    if type(saga_id) is str and saga_id.strip():
        return saga_id
    raise ValueError(
        f"saga_id={saga_id!r}: give a non-empty string (your own id for the run, such as an "
        "order number), or leave it out for a generated one"
    )
