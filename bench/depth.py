"""Queue depth scaling: the fetch script's latency and Redis memory per queued task, at a small
and a large depth; and ``acquire`` of one run (fetch plus claim) on real queued runs.

Redis part. Each depth gets its own queue (own keys under a throwaway prefix), filled directly
with 36-character UUID strings (what a run id looks like in the ready list) by RPUSH in
pipelined chunks of 10,000: the shortcut skips PostgreSQL, because the fetch script never
touches the store. Memory is ``MEMORY USAGE <ready key> SAMPLES 0`` (exact) divided by the
count, and, for comparison, the ``used_memory`` delta of ``INFO memory`` across the fill (noisy
at small depths: anything else on the server moves it). Latency is the client-side round trip
of one ``fetch.lua`` call (EVALSHA, lease 1 run, a fresh lease value per call), measured
alternately on the two queues so that background noise hits both alike; after each call an
untimed RPUSH puts one id back, so the depth stays constant. A ``PING`` round trip is measured
the same way as the floor. The ids leased this way are unknown to any store; nothing claims
them (``acquire`` would drop them), and the keys are deleted at the end.

``acquire`` part. A fresh PostgreSQL database per backend (Redis, and the SQL queue on
PostgreSQL) is filled through ``Client.enqueue_many`` to each depth and ANALYZEd; then
``backend.acquire([queue], 1, worker)`` is timed, one run at a time, with an untimed
``Client.enqueue`` after each call to keep the depth.

Run ``python -m bench.depth [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis

from bench.drain import analyze, fill
from bench.env import QUEUE, REDIS_URL, drop_redis_prefix, postgres_target
from bench.pickup import percentile
from taskrt.queue.keyspace import Keyspace, QueueKeys
from taskrt.queue.redis_index import PROMOTE_PER_FETCH
from taskrt.queue.scripts import Scripts
from taskrt.records import WorkerIdentity

CHUNK = 10_000
FULL: dict[str, Any] = {
    "depths": (1000, 1_000_000),
    "samples": 2000,
    "acquire_at": (1000, 20_000),
    "acquire_samples": 200,
}
"""Sizes of the full run (``measure()``'s defaults)."""
QUICK: dict[str, Any] = {
    "depths": (1000, 10_000),
    "samples": 300,
    "acquire_at": (1000, 2000),
    "acquire_samples": 50,
}
"""Sizes of the smoke run (``measure()``'s defaults are the full run's)."""
LEASE_TTL_MS = 30_000


def _stats_us(samples_ns: Sequence[int]) -> dict[str, float]:
    values = [v / 1000 for v in samples_ns]
    return {
        "samples": len(values),
        "p50_us": statistics.median(values),
        "p90_us": percentile(values, 0.90),
        "p99_us": percentile(values, 0.99),
        "mean_us": statistics.fmean(values),
    }


def _ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _fill(client: redis.Redis, key: str, count: int) -> None:
    """RPUSH ``count`` UUID strings, 10,000 per RPUSH, ten RPUSHes per pipeline."""
    pipe = client.pipeline(transaction=False)
    queued = 0
    for start in range(0, count, CHUNK):
        pipe.rpush(key, *_ids(min(CHUNK, count - start)))
        queued += 1
        if queued == 10:
            pipe.execute()
            queued = 0
    if queued:
        pipe.execute()


def _fetch_args(keys: QueueKeys) -> list[str]:
    return [keys.ready, keys.delayed, keys.inflight, keys.leases, keys.paused]


def redis_depths(depths: Sequence[int], samples: int, warmup: int = 200) -> dict[str, Any]:
    """Fill one queue per depth; memory per queued id and fetch-script latency at each."""
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"benchdepth{uuid.uuid4().hex[:8]}:"
    space = Keyspace(prefix)
    queues = {depth: space.queue(f"depth{depth}") for depth in depths}
    out: dict[str, Any] = {"depths": {}}
    try:
        for depth in sorted(depths, reverse=True):
            keys = queues[depth]
            before = _used_memory(client)
            started = time.perf_counter()
            _fill(client, keys.ready, depth)
            fill_seconds = time.perf_counter() - started
            delta = _used_memory(client) - before
            count = int(client.llen(keys.ready))
            usage = int(client.memory_usage(keys.ready, samples=0) or 0)
            out["depths"][str(depth)] = {
                "queued": count,
                "fill_seconds": fill_seconds,
                "memory_usage_bytes": usage,
                "bytes_per_task": usage / count,
                "used_memory_delta_bytes": delta,
                "used_memory_delta_per_task": delta / count,
            }

        scripts = Scripts(client)
        scripts.load()
        timings: dict[int, list[int]] = {depth: [] for depth in depths}
        pings: list[int] = []
        order = list(depths)
        for i in range(warmup + samples):
            for depth in order if i % 2 == 0 else reversed(order):
                keys = queues[depth]
                value = f"{uuid.uuid4()}:{secrets.token_hex(8)}"
                t0 = time.perf_counter_ns()
                reply = scripts.fetch(
                    keys=_fetch_args(keys), args=[1, LEASE_TTL_MS, value, PROMOTE_PER_FETCH]
                )
                elapsed = time.perf_counter_ns() - t0
                if len(reply) != 2:
                    raise RuntimeError(f"fetch at depth {depth} leased {len(reply) - 1} runs")
                client.rpush(keys.ready, str(uuid.uuid4()))
                if i >= warmup:
                    timings[depth].append(elapsed)
            t0 = time.perf_counter_ns()
            client.ping()
            if i >= warmup:
                pings.append(time.perf_counter_ns() - t0)
        for depth in depths:
            entry = out["depths"][str(depth)]
            entry["fetch"] = _stats_us(timings[depth])
            entry["queued_after"] = int(client.llen(queues[depth].ready))
        out["ping"] = _stats_us(pings)
        small, large = str(min(depths)), str(max(depths))
        out["small"], out["large"] = int(small), int(large)
        out["fetch_p50_ratio"] = (
            out["depths"][large]["fetch"]["p50_us"] / out["depths"][small]["fetch"]["p50_us"]
        )
        out["fetch_mean_ratio"] = (
            out["depths"][large]["fetch"]["mean_us"] / out["depths"][small]["fetch"]["mean_us"]
        )
    finally:
        drop_redis_prefix(prefix)
        client.close()
    return out


def acquire_depths(backend: str, depths: Sequence[int], samples: int) -> dict[str, Any]:
    """Time ``acquire`` of one run at each depth (ascending) on real queued runs."""
    out: dict[str, Any] = {}
    identity = WorkerIdentity(id=uuid.uuid4(), lease_ttl=LEASE_TTL_MS / 1000)
    with postgres_target(use_redis=backend == "redis") as target, target.client() as client:
        service = client.service.service  # unscoped: the queue backend lives there
        queued = 0
        for depth in sorted(depths):
            fill(client, depth - queued)
            queued = depth
            analyze(service.store.engine)
            for _ in range(20):  # warm-up, replaced like the measured ones
                if len(service.backend.acquire([QUEUE], 1, identity)) != 1:
                    raise RuntimeError(f"{backend} acquire found no run at depth {depth}")
                client.enqueue("bench.noop")
            timings: list[int] = []
            for _ in range(samples):
                t0 = time.perf_counter_ns()
                runs = service.backend.acquire([QUEUE], 1, identity)
                timings.append(time.perf_counter_ns() - t0)
                if len(runs) != 1:
                    raise RuntimeError(f"{backend} acquire found no run at depth {depth}")
                client.enqueue("bench.noop")
            out[str(depth)] = _stats_us(timings)
    return out


def measure(
    depths: Sequence[int] = (1000, 1_000_000),
    samples: int = 2000,
    acquire_at: Sequence[int] = (1000, 20_000),
    acquire_samples: int = 200,
) -> dict[str, Any]:
    """The Redis fetch-script figures, then ``acquire`` on Redis and on the SQL queue."""
    result = redis_depths(depths, samples)
    result["acquire"] = {
        backend: acquire_depths(backend, acquire_at, acquire_samples)
        for backend in ("redis", "postgresql")
    }
    return result


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 deep")
    args = parser.parse_args()
    print(json.dumps(measure(**(QUICK if args.quick else {})), indent=2))


if __name__ == "__main__":
    main()
