"""Drain throughput: N pre-queued no-op tasks, W worker processes with concurrency C.

The workers start first and run a few tasks (so start-up, imports and connection set-up are not
timed, and their idle RSS can be read); then the queue is paused, filled with ``enqueue_many``
and ANALYZEd, and resumed: the clock runs from the resume until every task's run is
``succeeded`` in the store (polled every 50 ms). The worker processes' RSS is sampled at each
poll, and the CPU time the workers, PostgreSQL and Redis used over the drain is read from /proc
(``cpu_us_per_task``: where the machine's time went, per task).

Run ``python -m bench.drain [--tasks N] [--workers W] [--concurrency C] [--backend B]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import ExitStack
from typing import Any

import sqlalchemy as sa

from bench.env import (
    QUEUE,
    cpu_snapshot,
    cpu_used,
    rss_bytes,
    succeeded_runs,
    target_for,
    wait_for_workers,
    wait_succeeded,
    worker,
)
from taskrt.client import Client

WARMUP = 20
"""Tasks run one at a time before the measurement (then the workers idle)."""
IDLE_SETTLE = 2.0
"""Seconds the workers idle before their idle RSS is read."""
POLL = 0.05


def fill(client: Client, tasks: int, batch: int = 1000) -> None:
    """Enqueue ``tasks`` no-op tasks in batches."""
    for start in range(0, tasks, batch):
        client.enqueue_many([{"name": "bench.noop"} for _ in range(min(batch, tasks - start))])


def analyze(engine: sa.Engine) -> None:
    """ANALYZE after a bulk fill, as autovacuum would within a minute in a real deployment."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))


def _mib(value: float | None) -> float | None:
    return None if value is None else value / (1024 * 1024)


def measure(
    tasks: int, workers: int, concurrency: int, backend: str, *, timeout: float = 600.0
) -> dict[str, Any]:
    """Drain ``tasks`` pre-queued no-ops with ``workers`` processes on ``backend`` (``redis``,
    ``postgresql`` or ``sqlite``); tasks per second and the workers' RSS."""
    with target_for(backend) as target, target.client() as client, ExitStack() as stack:
        service = client.service
        engine = service.store.engine
        procs = [
            stack.enter_context(worker(target, "-c", str(concurrency), settle=0))
            for _ in range(workers)
        ]
        wait_for_workers(client, workers)
        for _ in range(WARMUP):
            client.enqueue("bench.noop")
        if wait_succeeded(engine, WARMUP) < WARMUP:
            raise RuntimeError(f"the {backend} workers did not run the warm-up tasks")
        time.sleep(IDLE_SETTLE)
        idle = [rss_bytes(p.pid) or 0 for p in procs]

        service.pause(QUEUE)
        fill(client, tasks)
        analyze(engine)
        samples: list[list[int]] = [[] for _ in procs]
        cpu_before = cpu_snapshot([p.pid for p in procs])
        started = time.perf_counter()
        service.resume(QUEUE)
        while True:
            time.sleep(POLL)
            for proc, series in zip(procs, samples, strict=True):
                rss = rss_bytes(proc.pid)
                if rss is not None:
                    series.append(rss)
            done = succeeded_runs(engine) - WARMUP
            elapsed = time.perf_counter() - started
            if done >= tasks:
                cpu = cpu_used(cpu_before, cpu_snapshot([p.pid for p in procs]))
                break
            if elapsed > timeout:
                raise RuntimeError(f"{backend} drain stalled at {done} of {tasks} tasks")
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a {backend} worker died during the drain")
    loaded = [s for s in samples if s]
    return {
        "backend": backend,
        "tasks": tasks,
        "workers": workers,
        "concurrency": concurrency,
        "seconds": elapsed,
        "tasks_per_s": tasks / elapsed,
        "rss_idle_mib": [_mib(v) for v in idle],
        "rss_load_peak_mib": [_mib(max(s)) for s in loaded],
        "rss_load_median_mib": [_mib(statistics.median(s)) for s in loaded],
        "cpu_us_per_task": {group: used / tasks * 1e6 for group, used in sorted(cpu.items())},
    }


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--backend", choices=["redis", "postgresql", "sqlite"], default="redis")
    args = parser.parse_args()
    print(json.dumps(measure(args.tasks, args.workers, args.concurrency, args.backend), indent=2))


if __name__ == "__main__":
    main()
