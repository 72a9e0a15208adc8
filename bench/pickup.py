"""Pickup latency: from the start of an enqueue call to the handler starting, with an idle worker.

Run ``python -m bench.pickup [--tasks N] [--rate PER_SECOND]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import sqlalchemy as sa

from bench.env import postgres_target, worker
from taskrt.client import Client
from taskrt.settings import load_settings


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    index = min(round(q * (len(ordered) - 1)), len(ordered) - 1)
    return ordered[index]


def measure(tasks: int, rate: float, *, use_redis: bool = True) -> dict[str, float]:
    """Enqueue ``tasks`` pickup tasks one at a time at ``rate`` per second; return ms figures."""
    with postgres_target(use_redis=use_redis) as target:
        settings = load_settings(
            database_url=target.database_url,
            redis_url=target.redis_url,
            redis_prefix=target.redis_prefix,
            plugins_modules=["bench.handlers"],
            log_level="WARNING",
        )
        with Client(settings) as client, worker(target, "-c", "8"):
            for _ in range(20):  # warm connections and scripts on both sides
                client.enqueue("bench.pickup", {"t0": time.time_ns()})
            time.sleep(1.0)
            interval = 1.0 / rate
            next_at = time.perf_counter()
            for _ in range(tasks):
                client.enqueue("bench.pickup", {"t0": time.time_ns()})
                next_at += interval
                pause = next_at - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            engine = client.service.store.engine
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with engine.connect() as conn:
                    done = conn.execute(
                        sa.text("SELECT count(*) FROM task_runs WHERE status = 'succeeded'")
                    ).scalar_one()
                if done >= tasks + 20:
                    break
                time.sleep(0.2)
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.text(
                        "SELECT (r.result)::text FROM task_runs r JOIN tasks t ON t.id = r.task_id "
                        "WHERE r.status = 'succeeded' ORDER BY t.id OFFSET 20"
                    )
                ).all()
    latencies = [int(row[0]) / 1e6 for row in rows]
    return {
        "tasks": len(latencies),
        "rate_per_s": rate,
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
    args = parser.parse_args()
    print(json.dumps(measure(args.tasks, args.rate), indent=2))


if __name__ == "__main__":
    main()
