"""Enqueue throughput: the Python client and the HTTP API, Redis backend, PostgreSQL store.

No worker runs: tasks only accumulate. Every mode sends ``bench.noop`` tasks with a small
payload (``{"n": i}``) after a short warm-up that is not timed.

- ``client_single``: one ``Client.enqueue`` after the other, one thread.
- ``client_threads``: 8 threads share one ``Client`` (it is thread-safe), each enqueues its share.
- ``client_many``: ``Client.enqueue_many`` with 1,000 tasks per call.
- ``http_single_<C>``: ``POST /api/v1/tasks``, one task per request, from C threads with one
  keep-alive ``httpx.Client`` (one connection) each, against ``taskrt api --workers 2``.
- ``http_batch_<C>``: ``POST /api/v1/tasks/batch`` with 1,000 tasks per request, likewise.

The API runs with its production defaults: the ``apikey`` auth backend (a producer key made for
the run; each request looks the key up in PostgreSQL) and the Redis rate limiter switched on,
with a producer limit far above what the benchmark sends, so the limiter's script runs on every
request but never refuses one. ``auth=False`` runs it with ``TASKRT_AUTH_DISABLED=true`` and the
limiter off instead.

Run ``python -m bench.enqueue [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx

from bench.env import api_server, postgres_target
from taskrt.apikeys import create_api_key
from taskrt.client import Client

BATCH = 1000
NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
WARMUP = 20


@dataclass(frozen=True)
class Sizes:
    """How many tasks (or requests) each mode sends."""

    single: int = 3000
    threads: int = 8000
    many: int = 20_000
    http_single_1: int = 2000
    http_single_8: int = 8000
    http_batch_requests: int = 20
    http_single_seconds: float = 10.0
    """HTTP single stops early after this long (each thread finishes its request in flight)."""

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny sizes for the smoke run."""
        return cls(
            single=200,
            threads=400,
            many=2000,
            http_single_1=200,
            http_single_8=400,
            http_batch_requests=2,
            http_single_seconds=2.0,
        )


def _payloads(start: int, count: int) -> list[dict[str, Any]]:
    return [{"name": "bench.noop", "payload": {"n": i}} for i in range(start, start + count)]


def _parallel(threads: int, work: Callable[[int, float], int]) -> tuple[int, float]:
    """Run ``work(thread_index, started)`` on ``threads`` threads released together (``started``
    is the ``perf_counter`` time the clock started); returns (sum of results, seconds)."""
    barrier = threading.Barrier(threads + 1)
    clock: list[float] = []

    def run(index: int) -> int:
        barrier.wait()
        return work(index, clock[0])

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(run, i) for i in range(threads)]
        clock.append(time.perf_counter())
        barrier.wait()
        total = sum(f.result() for f in futures)
        return total, time.perf_counter() - clock[0]


def _rate(count: int, seconds: float, unit: str, **extra: Any) -> dict[str, Any]:
    return {"count": count, "seconds": seconds, "per_s": count / seconds, "unit": unit, **extra}


def client_modes(client: Client, sizes: Sizes) -> dict[str, dict[str, Any]]:
    """The three client modes, on one client."""
    results: dict[str, dict[str, Any]] = {}
    for i in range(WARMUP):
        client.enqueue("bench.noop", {"n": i})
    client.enqueue_many(_payloads(0, BATCH))

    started = time.perf_counter()
    for i in range(sizes.single):
        client.enqueue("bench.noop", {"n": i})
    results["client_single"] = _rate(sizes.single, time.perf_counter() - started, "tasks")

    share = sizes.threads // 8

    def enqueue_share(index: int, _started: float) -> int:
        for i in range(share):
            client.enqueue("bench.noop", {"n": index * share + i})
        return share

    count, seconds = _parallel(8, enqueue_share)
    results["client_threads"] = _rate(count, seconds, "tasks", threads=8)

    batches = [_payloads(start, BATCH) for start in range(0, sizes.many, BATCH)]
    started = time.perf_counter()
    for batch in batches:
        client.enqueue_many(batch)
    results["client_many"] = _rate(sizes.many, time.perf_counter() - started, "tasks", batch=BATCH)
    return results


def http_modes(base_url: str, key: str | None, sizes: Sizes) -> dict[str, dict[str, Any]]:
    """The HTTP modes against a running API."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    results: dict[str, dict[str, Any]] = {}

    def session() -> httpx.Client:
        # httpcore writes the headers and the body in two send() calls and leaves Nagle's
        # algorithm on: the body then waits for the server's delayed ACK (about 40 ms on
        # Linux). urllib3 (requests) and most HTTP clients set TCP_NODELAY; so does this one.
        transport = httpx.HTTPTransport(socket_options=[NODELAY])
        return httpx.Client(base_url=base_url, headers=headers, timeout=60, transport=transport)

    def post_single(http: httpx.Client, n: int) -> None:
        response = http.post("/api/v1/tasks", json={"name": "bench.noop", "payload": {"n": n}})
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/v1/tasks: {response.status_code} {response.text}")

    def post_batch(http: httpx.Client, start: int) -> None:
        response = http.post("/api/v1/tasks/batch", json={"tasks": _payloads(start, BATCH)})
        if response.status_code != 201:
            raise RuntimeError(f"POST /api/v1/tasks/batch: {response.status_code}")

    def open_sessions(count: int) -> list[httpx.Client]:
        sessions = [session() for _ in range(count)]
        for http in sessions:  # open each connection before the clock starts
            post_single(http, 0)
        return sessions

    def single(connections: int, total: int) -> dict[str, Any]:
        share = total // connections
        sessions = open_sessions(connections)

        def work(index: int, started: float) -> int:
            deadline = started + sizes.http_single_seconds
            sent = 0
            for i in range(share):
                post_single(sessions[index], index * share + i)
                sent += 1
                if time.perf_counter() > deadline:
                    break
            return sent

        try:
            count, seconds = _parallel(connections, work)
        finally:
            for http in sessions:
                http.close()
        return _rate(count, seconds, "requests", connections=connections)

    def batch(connections: int, requests: int) -> dict[str, Any]:
        share = max(requests // connections, 1)
        sessions = open_sessions(connections)

        def work(index: int, _started: float) -> int:
            for i in range(share):
                post_batch(sessions[index], (index * share + i) * BATCH)
            return share * BATCH

        try:
            count, seconds = _parallel(connections, work)
        finally:
            for http in sessions:
                http.close()
        return _rate(count, seconds, "tasks", connections=connections, batch=BATCH)

    with session() as http:  # warm both sides: connections, caches, scripts
        for i in range(WARMUP):
            post_single(http, i)
        post_batch(http, 0)
    results["http_single_1"] = single(1, sizes.http_single_1)
    results["http_single_8"] = single(8, sizes.http_single_8)
    results["http_batch_1"] = batch(1, sizes.http_batch_requests)
    results["http_batch_2"] = batch(2, sizes.http_batch_requests)
    return results


def measure(sizes: Sizes | None = None, *, auth: bool = True) -> dict[str, Any]:
    """Every enqueue mode; each entry has ``per_s`` (tasks, or requests for HTTP single)."""
    sizes = sizes or Sizes()
    results: dict[str, Any] = {}
    with postgres_target() as target, target.client() as client:
        results.update(client_modes(client, sizes))
    with postgres_target() as target, target.client() as client:
        key: str | None = None
        if auth:
            _record, key = create_api_key(client.service.store, name="bench", role="producer")
            settings: dict[str, object] = {"rate_limit_producer": "1000000/second"}
        else:
            settings = {"auth_disabled": "true", "rate_limit_enabled": "false"}
        with api_server(target, workers=2, settings=settings) as base_url:
            results.update(http_modes(base_url, key, sizes))
    results["http_auth"] = "apikey + rate limiter" if auth else "disabled (no rate limiter)"
    results["api_processes"] = 2
    return results


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    parser.add_argument("--no-auth", action="store_true", help="run the API without auth")
    args = parser.parse_args()
    sizes = Sizes.quick() if args.quick else Sizes()
    print(json.dumps(measure(sizes, auth=not args.no_auth), indent=2))


if __name__ == "__main__":
    main()
