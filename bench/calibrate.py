"""Calibration: the physical limits the other figures sit on, measured in the same run.

Issue 9 gives them for its reference machine (a Redis round trip about 0.15 ms, a PostgreSQL
commit about 0.4 ms, COPY about 350,000 rows/s); measuring them here tells how this machine
compares, so figures from different machines (or from a busy moment) can be read side by side.

- Redis ``PING`` round trip, one connection.
- PostgreSQL ``SELECT 1`` round trip, one connection.
- PostgreSQL committed single-row INSERTs per second (autocommit, one connection, a logged
  table with a bigint primary key and a small jsonb column): the commit (WAL flush) limit that
  one-at-a-time enqueue sits on.
- PostgreSQL COPY rows per second into the same table (one transaction).

Run ``python -m bench.calibrate``.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid
from typing import Any

import psycopg
import redis

from bench.env import PG_ADMIN, REDIS_URL

TABLE = "CREATE TABLE calibration (id bigserial PRIMARY KEY, body jsonb NOT NULL)"


def _round_trips_us(call: Any, samples: int) -> float:
    for _ in range(50):
        call()
    timings: list[int] = []
    for _ in range(samples):
        t0 = time.perf_counter_ns()
        call()
        timings.append(time.perf_counter_ns() - t0)
    return statistics.median(timings) / 1000


def measure(samples: int = 2000, copy_rows: int = 200_000) -> dict[str, Any]:
    """Round trips (median, microseconds) and PostgreSQL write rates."""
    out: dict[str, Any] = {}
    client = redis.Redis.from_url(REDIS_URL)
    try:
        out["redis_ping_us"] = _round_trips_us(client.ping, samples)
    finally:
        client.close()

    name = f"taskrt_bench_cal_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TABLE)
            out["pg_select1_us"] = _round_trips_us(lambda: conn.execute("SELECT 1"), samples)
            insert = "INSERT INTO calibration (body) VALUES ('{\"n\": 1}')"
            for _ in range(50):
                conn.execute(insert)
            started = time.perf_counter()
            for _ in range(samples):
                conn.execute(insert)
            out["pg_commits_per_s"] = samples / (time.perf_counter() - started)
            started = time.perf_counter()
            with conn.transaction(), conn.cursor().copy("COPY calibration (body) FROM STDIN") as cp:
                for _ in range(copy_rows):
                    cp.write_row(('{"n": 1}',))
            out["pg_copy_rows_per_s"] = copy_rows / (time.perf_counter() - started)
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return out


if __name__ == "__main__":
    print(json.dumps(measure(), indent=2))
