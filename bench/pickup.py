"""Pickup latency: from the start of an enqueue call to the handler starting, with an idle worker.

The producer stamps ``time.time_ns()`` into the payload just before ``Client.enqueue`` (which
commits the task to PostgreSQL and, on Redis, dispatches it); the ``bench.pickup`` handler
returns its own clock minus that stamp, and the results are read back from the store. Tasks are
sent one at a time on a fixed schedule (no catching up in bursts), to one worker process with
concurrency 8 that has already run a few warm-up tasks.

:func:`measure` does all that on a fresh database; :func:`warm_up` and :func:`send` do the
steps on a target and worker someone else set up (``bench.history`` measures pickup on a
database holding millions of finished tasks, with and without a prune running).

Run ``python -m bench.pickup [--tasks N] [--rate PER_SECOND] [--backend redis|postgresql]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import uuid
from typing import Any

import sqlalchemy as sa

from bench.env import target_for, wait_for_workers, worker
from taskrt.client import Client
from taskrt.db import models

WARMUP = 20


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    index = min(round(q * (len(ordered) - 1)), len(ordered) - 1)
    return ordered[index]


def _results(engine: sa.Engine, ids: list[uuid.UUID]) -> list[float]:
    """Latencies (ms) of the succeeded pickup tasks among ``ids``, in id order."""
    runs = models.task_runs
    stmt = (
        sa.select(runs.c.result)
        .where(runs.c.task_id.in_(ids), runs.c.status == "succeeded")
        .order_by(runs.c.task_id)
    )
    with engine.connect() as conn:
        return [int(value) / 1e6 for value in conn.execute(stmt).scalars()]


def _wait(engine: sa.Engine, ids: list[uuid.UUID], timeout: float = 60.0) -> None:
    """Poll until every task of ``ids`` has a succeeded run (or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    runs = models.task_runs
    query = (
        sa.select(sa.func.count())
        .select_from(runs)
        .where(runs.c.task_id.in_(ids), runs.c.status == "succeeded")
    )
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(query).scalar_one() >= len(ids):
                return
        time.sleep(0.05)


def warm_up(client: Client) -> None:
    """Run WARMUP pickup tasks (connections and scripts warm on both sides), then idle 1 s."""
    ids = [client.enqueue("bench.pickup", {"t0": time.time_ns()}).id for _ in range(WARMUP)]
    _wait(client.service.store.engine, ids)
    time.sleep(1.0)


def send(client: Client, tasks: int, rate: float) -> dict[str, Any]:
    """Enqueue ``tasks`` pickup tasks one at a time at ``rate`` per second to a running, warm
    worker; wait for them and return the ms figures (without ``backend``)."""
    engine = client.service.store.engine
    interval = 1.0 / rate
    ids: list[uuid.UUID] = []
    started = next_at = time.perf_counter()
    for _ in range(tasks):
        ids.append(client.enqueue("bench.pickup", {"t0": time.time_ns()}).id)
        next_at += interval
        pause = next_at - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        else:  # running late: go on from now rather than send a burst to catch up
            next_at = time.perf_counter()
    achieved = tasks / (time.perf_counter() - started)
    _wait(engine, ids)
    latencies = _results(engine, ids)
    if len(latencies) < tasks:
        raise RuntimeError(f"only {len(latencies)} of {tasks} pickup tasks ran")
    return {
        "tasks": len(latencies),
        "rate_per_s": rate,
        "achieved_rate_per_s": achieved,
        "p50_ms": statistics.median(latencies),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
    }


def measure(
    tasks: int, rate: float, *, use_redis: bool = True, backend: str | None = None
) -> dict[str, Any]:
    """Enqueue ``tasks`` pickup tasks one at a time at ``rate`` per second; return ms figures.

    ``backend`` (``redis``, ``postgresql`` or ``sqlite``) overrides ``use_redis``.
    """
    backend = backend or ("redis" if use_redis else "postgresql")
    with (
        target_for(backend) as target,
        target.client() as client,
        worker(target, "-c", "8", settle=0),
    ):
        wait_for_workers(client, 1)
        warm_up(client)
        try:
            result = send(client, tasks, rate)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc} on {backend}") from None
    return {"backend": backend, **result}


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
