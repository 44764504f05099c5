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
