"""Sagas for the cluster tests: steps that note who drives them, and when, and take as long as
their input says; and how to leave runs behind as a worker that died would."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path
from typing import Any

from statesaga import Saga, Step
from statesaga.compiler import compile_saga
from statesaga.context import Context
from statesaga.engine.state import initial_config
from statesaga.loader import saga_reference
from statesaga.store.base import RunRecord, SagaStore

#: When each (run, step) started in this process (epoch seconds).
started: dict[tuple[str, str], float] = {}


async def timed(ctx: Context) -> None:
    """Take ``ctx.data["seconds"]``; note the drive, and any other drive of the run at once.

    With ``$CLUSTER_DIR``, a lock file per run marks the run as being driven: finding it there
    already means two processes drive the run at the same time (an ``overlap-`` file is left).
    """
    started[(ctx.saga_id, ctx.step)] = time.time()
    folder = Path(os.environ["CLUSTER_DIR"]) if "CLUSTER_DIR" in os.environ else None
    lock = None
    if folder is not None:
        mine = f"{os.getpid()}-{uuid.uuid4().hex[:6]}"
        try:
            os.close(os.open(folder / f"lock-{ctx.saga_id}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            lock = folder / f"lock-{ctx.saga_id}"
        except FileExistsError:
            (folder / f"overlap-{ctx.saga_id}-{mine}").write_text("")
        (folder / f"step-{ctx.saga_id}-{ctx.step}-{mine}").write_text(str(time.time()))
    await asyncio.sleep(float(ctx.data.get("seconds", 0.05)))
    if folder is not None:
        (folder / f"done-{ctx.saga_id}-{ctx.step}-{os.getpid()}").write_text(str(time.time()))
    if lock is not None:
        lock.unlink()


class Timed(Saga):
    """Two steps, each taking ``seconds``."""

    steps = (Step("a", timed), Step("b", timed))


def new_run(
    saga: type[Saga],
    run_id: str,
    data: dict[str, Any],
    *,
    owner: str | None = None,
    expires: float | None = None,
) -> RunRecord:
    """A run of ``saga`` that has not started, leased to ``owner`` until ``expires`` (a worker
    that took it and died), or to nobody: the first worker to look takes it."""
    compiled = compile_saga(saga)
    now = time.time()
    return RunRecord(
        run_id=run_id,
        saga=compiled.name,
        saga_path=saga_reference(saga),
        fingerprint=compiled.fingerprint,
        input=data,
        status=compiled.initial,
        config=initial_config(compiled),
        version=0,
        lease_owner=owner,
        lease_expires=expires,
        created_at=now,
        updated_at=now,
    )


async def strand(
    store: SagaStore, run_id: str, *, seconds: float, owner: str | None, expires: float | None
) -> None:
    """A ``Timed`` run that has not started, leased to ``owner`` until ``expires`` (a worker
    that took it and died), or to nobody."""
    await store.create(new_run(Timed, run_id, {"seconds": seconds}, owner=owner, expires=expires))
