"""Pickup latency: from the start of an enqueue call to the handler starting, with an idle worker.

The producer stamps ``time.time_ns()`` into the payload just before ``Client.enqueue`` (which
commits the task to PostgreSQL and, on Redis, dispatches it); the ``bench.pickup`` handler
returns its own clock minus that stamp, and the results are read back from the store. Tasks are
sent one at a time on a fixed schedule (no catching up in bursts), to one worker process with
concurrency 8 that has already run a few warm-up tasks.

Run ``python -m bench.pickup [--tasks N] [--rate PER_SECOND] [--backend redis|postgresql]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import sqlalchemy as sa

from bench.env import target_for, wait_for_workers, wait_succeeded, worker

WARMUP = 20


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    index = min(round(q * (len(ordered) - 1)), len(ordered) - 1)
    return ordered[index]


def measure(
    tasks: int, rate: float, *, use_redis: bool = True, backend: str | None = None
) -> dict[str, Any]:
    """Enqueue ``tasks`` pickup tasks one at a time at ``rate`` per second; return ms figures.

    ``backend`` (``redis``, ``postgresql`` or ``sqlite``) overrides ``use_redis``.
    """
    backend = backend or ("redis" if use_redis else "postgresql")
    with target_for(backend) as target, target.client() as client:
        engine = client.service.store.engine
        with worker(target, "-c", "8", settle=0):
            wait_for_workers(client, 1)
            for _ in range(WARMUP):  # warm connections and scripts on both sides
                client.enqueue("bench.pickup", {"t0": time.time_ns()})
            wait_succeeded(engine, WARMUP)
            time.sleep(1.0)
            interval = 1.0 / rate
            started = next_at = time.perf_counter()
            for _ in range(tasks):
                client.enqueue("bench.pickup", {"t0": time.time_ns()})
                next_at += interval
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                else:  # running late: go on from now rather than send a burst to catch up
                    next_at = time.perf_counter()
            achieved = tasks / (time.perf_counter() - started)
            wait_succeeded(engine, tasks + WARMUP)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT (r.result)::text FROM task_runs r JOIN tasks t ON t.id = r.task_id "
                    "WHERE r.status = 'succeeded' ORDER BY t.id OFFSET :warmup"
                ),
                {"warmup": WARMUP},
            ).all()
    latencies = [int(row[0]) / 1e6 for row in rows]
    if len(latencies) < tasks:
        raise RuntimeError(f"only {len(latencies)} of {tasks} pickup tasks ran on {backend}")
    return {
        "backend": backend,
        "tasks": len(latencies),
        "rate_per_s": rate,
        "achieved_rate_per_s": achieved,
        "p50_ms": statistics.median(latencies),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
    }


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--backend", choices=["redis", "postgresql", "sqlite"], default="redis")
    args = parser.parse_args()
    print(json.dumps(measure(args.tasks, args.rate, backend=args.backend), indent=2))


if __name__ == "__main__":
    main()
