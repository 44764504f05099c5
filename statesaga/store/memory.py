"""The reference store: everything in process memory, with the same rules as the others."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Sequence

import attrs

from ._codec import dumps
from .base import (
    AsyncContext,
    Commit,
    LeaseHeld,
    RunNotFound,
    RunRecord,
    RunSnapshot,
    StepRecord,
    StoreError,
    TransitionRecord,
    WriteConflict,
)


class MemoryStore(AsyncContext):
    """Keeps runs in a dict: for tests, and for runs that need history but not durability."""

    url = "memory://"

    def __init__(self) -> None:
        self._runs: dict[str, RunRecord] = {}
        self._steps: dict[str, dict[str, StepRecord]] = {}
        self._history: dict[str, list[TransitionRecord]] = {}
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def create(self, run: RunRecord) -> None:
        if run.run_id in self._runs:
            raise StoreError(f"run {run.run_id} already exists", run_id=run.run_id)
        # Stored as JSON would store it, so memory runs behave like durable ones.
        data = json.loads(dumps(run.input, run_id=run.run_id))
        self._runs[run.run_id] = attrs.evolve(run, input=data)
        self._steps[run.run_id] = {}
        self._history[run.run_id] = []

    async def commit(self, commit: Commit) -> None:
        if commit.create is not None:
            await self.create(commit.create)
        run = self._runs.get(commit.run_id)
        if run is None:
            raise RunNotFound(commit.run_id)
        if run.lease_owner != commit.lease_owner or run.version != commit.version:
            raise WriteConflict(
                commit.run_id,
                f"expected version {commit.version} leased to {commit.lease_owner}, found "
                f"version {run.version} leased to {run.lease_owner}",
            )
        # Serialise first: a commit that cannot be stored changes nothing.
        steps = [
            attrs.evolve(
                step,
                result=None
                if step.result is None
                else json.loads(dumps(step.result, run_id=commit.run_id)),
            )
            for step in commit.steps
        ]
        self._runs[commit.run_id] = attrs.evolve(
            run,
            status=commit.status,
            config=dict(commit.config),
            version=run.version + 1,
            updated_at=commit.updated_at,
            failed_step=commit.failed_step,
            error=commit.error,
        )
        self._steps[commit.run_id].update((step.step, step) for step in steps)
        self._history[commit.run_id].extend(commit.transitions)

    async def load(self, run_id: str) -> RunSnapshot:
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        return RunSnapshot(
            run=run,
            steps=copy.deepcopy(self._steps[run_id]),
            history=tuple(self._history[run_id]),
        )

    async def list_runs(
        self, *, status: str | None = None, saga: str | None = None, limit: int = 100
    ) -> list[RunRecord]:
        runs = [
            r
            for r in self._runs.values()
            if (status is None or r.status == status) and (saga is None or r.saga == saga)
        ]
        runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return runs[:limit]

    async def acquire(self, run_id: str, owner: str, expires: float, now: float) -> RunSnapshot:
        run = self._runs.get(run_id)
        if run is None:
            raise RunNotFound(run_id)
        held = run.lease_owner not in (None, owner) and (run.lease_expires or 0) >= now
        if held:
            raise LeaseHeld(run_id, run.lease_owner or "", run.lease_expires or 0)
        self._runs[run_id] = attrs.evolve(
            run, lease_owner=owner, lease_expires=expires, version=run.version + 1
        )
        return await self.load(run_id)

    async def renew(self, run_ids: Sequence[str], owner: str, expires: float) -> set[str]:
        kept = set()
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run is not None and run.lease_owner == owner:
                self._runs[run_id] = attrs.evolve(run, lease_expires=expires)
                kept.add(run_id)
        return kept

    async def release(self, run_id: str, owner: str) -> None:
        run = self._runs.get(run_id)
        if run is not None and run.lease_owner == owner:
            self._runs[run_id] = attrs.evolve(run, lease_owner=None, lease_expires=None)

    async def unfinished(self, now: float, limit: int = 100) -> list[str]:
        runs = [
            r
            for r in self._runs.values()
            if not r.finished and (r.lease_owner is None or (r.lease_expires or 0) < now)
        ]
        runs.sort(key=lambda r: (r.created_at, r.run_id))
        return [r.run_id for r in runs[:limit]]
