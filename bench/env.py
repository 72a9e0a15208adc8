"""Throwaway databases, Redis prefixes and worker processes for the benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

from taskrt.db import migrate
from taskrt.db.engine import create_engine

REPO_ROOT = Path(__file__).resolve().parents[1]
TASKRT = str(Path(sys.executable).with_name("taskrt"))
PG_ADMIN = os.environ.get("TASKRT_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TASKRT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class BenchTarget:
    """Where one benchmark runs: its database URL, Redis URL and key prefix."""

    database_url: str
    redis_url: str | None
    redis_prefix: str

    def env(self, **settings: object) -> dict[str, str]:
        """Environment for taskrt subprocesses on this target."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKRT_")}
        env["TASKRT_DATABASE_URL"] = self.database_url
        if self.redis_url:
            env["TASKRT_REDIS_URL"] = self.redis_url
        env["TASKRT_REDIS_PREFIX"] = self.redis_prefix
        env["TASKRT_PLUGINS_MODULES"] = "bench.handlers"
        env["TASKRT_LOG_LEVEL"] = "WARNING"
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        for key, value in settings.items():
            env[f"TASKRT_{key.upper()}"] = str(value)
        return env


@contextmanager
def postgres_target(use_redis: bool = True) -> Iterator[BenchTarget]:
    """A fresh migrated PostgreSQL database (and Redis prefix) for one benchmark."""
    name = f"taskrt_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    url = f"{base}/{name}"
    engine = create_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    try:
        yield BenchTarget(url, REDIS_URL if use_redis else None, prefix)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start : start + 500])
        client.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_target() -> Iterator[BenchTarget]:
    """A fresh migrated SQLite file for one benchmark."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="taskrt-bench-") as folder:
        url = f"sqlite:///{folder}/taskrt.db"
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield BenchTarget(url, None, "")


@contextmanager
def worker(
    target: BenchTarget, *args: str, settle: float = 1.5, **settings: object
) -> Iterator[subprocess.Popen[bytes]]:
    """A ``taskrt worker`` subprocess on ``target``, stopped with SIGTERM afterwards; waits
    ``settle`` seconds first so it can register and go idle."""
    proc = subprocess.Popen(
        [TASKRT, "worker", *args],
        env=target.env(**settings),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(settle)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
