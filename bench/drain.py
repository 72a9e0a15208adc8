"""Drain throughput: N pre-queued no-op tasks, W worker processes with concurrency C.

Run ``python -m bench.drain [--tasks N] [--workers W] [--concurrency C] [--backend B]``.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import ExitStack

import sqlalchemy as sa

from bench.env import BenchTarget, postgres_target, sqlite_target, worker
from taskrt.client import Client
from taskrt.settings import load_settings


def _settings(target: BenchTarget) -> object:
    return load_settings(
        database_url=target.database_url,
        redis_url=target.redis_url,
        redis_prefix=target.redis_prefix,
        plugins_modules=["bench.handlers"],
        log_level="WARNING",
    )


def fill(client: Client, tasks: int, batch: int = 1000) -> None:
    """Enqueue ``tasks`` no-op tasks in batches."""
    for start in range(0, tasks, batch):
        client.enqueue_many([{"name": "bench.noop"} for _ in range(min(batch, tasks - start))])


def analyze(engine: sa.Engine) -> None:
    """ANALYZE after a bulk fill, as autovacuum would within a minute in a real deployment."""
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))


def measure(tasks: int, workers: int, concurrency: int, backend: str) -> dict[str, float]:
    """Drain ``tasks`` pre-queued no-ops; return tasks per second."""
    target_cm = (
        sqlite_target() if backend == "sqlite" else postgres_target(use_redis=backend == "redis")
    )
    with target_cm as target, Client(_settings(target)) as client:  # type: ignore[arg-type]
        fill(client, tasks)
        engine = client.service.store.engine
        analyze(engine)
        query = sa.text("SELECT count(*) FROM task_runs WHERE status = 'succeeded'")
        with ExitStack() as stack:
            started = time.perf_counter()
            for _ in range(workers):
                stack.enter_context(worker(target, "-c", str(concurrency), settle=0))
            first = last = None
            while True:
                with engine.connect() as conn:
                    done = conn.execute(query).scalar_one()
                now = time.perf_counter()
                if done and first is None:
                    first = (now, done)
                if done >= tasks:
                    last = now
                    break
                if now - started > 600:
                    raise RuntimeError(f"drain stalled at {done} of {tasks}")
                time.sleep(0.05)
        assert first is not None
        # measured from the first completion, so worker start-up does not count
        rate = (tasks - first[1]) / max(last - first[0], 1e-9)
    return {"tasks": tasks, "workers": workers, "concurrency": concurrency, "tasks_per_s": rate}


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
