"""The processes of the chaos test: `statesaga worker`s and `statesaga relay`s on one
PostgreSQL schema, the relays (and the workers' optimistic sends) reaching RabbitMQ through a
`Proxy` that can be cut; and the runs they drive."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import attrs

from statesaga.store.base import RunRecord, SagaStore
from tests.crash.cluster import new_run

from .saga import ChaosSaga

ROOT = Path(__file__).resolve().parents[2]
LEASE_SECONDS = 3.0
POLL = 0.5
CONCURRENCY = 16
DRAIN_TIMEOUT = 10.0


def via(url: str, port: int) -> str:
    """``url`` with its port replaced by ``port`` (on 127.0.0.1): through the proxy."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return urlunsplit(
        parts._replace(netloc=f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}")
    )


@attrs.define
class Process:
    """One worker or relay: its command, its current process, and every pid it had."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_dir: Path
    popen: subprocess.Popen[bytes] | None = None
    generation: int = 0
    #: pid -> when (``time.time()``) that process was started.
    started: dict[int, float] = attrs.field(factory=dict)

    def start(self) -> int:
        self.generation += 1
        log = self.log_dir / f"{self.name}-{self.generation}.log"
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.started[self.popen.pid] = time.time()
        return self.popen.pid

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def signal(self, sig: signal.Signals) -> None:
        assert self.popen is not None
        self.popen.send_signal(sig)

    async def wait(self, seconds: float) -> int:
        """The exit code, once it exits (killed after ``seconds``)."""
        assert self.popen is not None
        popen = self.popen
        try:
            return await asyncio.to_thread(popen.wait, seconds)
        except subprocess.TimeoutExpired:
            popen.kill()
            return await asyncio.to_thread(popen.wait)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.log_dir.glob(f"{self.name}-*.log"))
        )


@attrs.define
class Cluster:
    """Workers and relays on ``store_url``, publishing to ``broker_url``."""

    store_url: str
    broker_url: str
    log_dir: Path
    workers: list[Process] = attrs.field(factory=list)
    relays: list[Process] = attrs.field(factory=list)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "STATESAGA_LEASE_SECONDS": str(LEASE_SECONDS),
            "CHAOS_POSTGRES": self.store_url,
        }

    def add_worker(self) -> Process:
        command = [sys.executable, "-m", "statesaga.cli", "worker", "--store", self.store_url]
        command += ["--broker", self.broker_url, "--poll", str(POLL)]
        command += ["--concurrency", str(CONCURRENCY), "--drain-timeout", str(DRAIN_TIMEOUT)]
        worker = Process(f"worker{len(self.workers)}", command, self.env(), self.log_dir)
        self.workers.append(worker)
        worker.start()
        return worker

    def add_relay(self) -> Process:
        command = [sys.executable, "-m", "statesaga.cli", "relay", "--store", self.store_url]
        command += ["--broker", self.broker_url, "--poll", str(POLL)]
        relay = Process(f"relay{len(self.relays)}", command, self.env(), self.log_dir)
        self.relays.append(relay)
        relay.start()
        return relay

    async def stop(self) -> list[str]:
        """SIGTERM every process and wait for it; what went wrong (exit codes), if anything."""
        everyone = [*self.workers, *self.relays]
        for process in everyone:
            if process.popen is not None and process.popen.poll() is None:
                process.signal(signal.SIGTERM)
        codes = [await process.wait(DRAIN_TIMEOUT + 20) for process in everyone]
        return [f"{p.name} exited {c}" for p, c in zip(everyone, codes, strict=True) if c != 0]

    def logs(self) -> str:
        return "\n".join(p.logs() for p in [*self.workers, *self.relays])

    @property
    def started(self) -> dict[int, float]:
        """pid -> when that worker process was started, for every worker process so far."""
        return {pid: at for w in self.workers for pid, at in w.started.items()}


def run_record(run_id: str, seed: int, topic: str) -> RunRecord:
    """A new ``ChaosSaga`` run that nobody drives yet: the first free worker takes it."""
    return new_run(ChaosSaga, run_id, {"seed": seed, "topic": topic})


async def create_runs(
    store: SagaStore, run_ids: list[str], seed: int, topic: str, *, over: float = 0.0
) -> None:
    """Create the runs, evenly over ``over`` seconds (at once with 0), in batches of 20."""
    began = time.monotonic()
    for start in range(0, len(run_ids), 20):
        batch = run_ids[start : start + 20]
        await asyncio.gather(*(store.create(run_record(r, seed, topic)) for r in batch))
        if over:
            due = began + over * (start + len(batch)) / len(run_ids)
            await asyncio.sleep(max(0.0, due - time.monotonic()))


def pick(rng: random.Random, workers: list[Process]) -> Process:
    return workers[rng.randrange(len(workers))]
