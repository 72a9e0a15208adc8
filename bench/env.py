"""Throwaway databases, Redis prefixes, worker and API processes for the benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import psycopg
import redis
import sqlalchemy as sa

from taskrt.client import Client
from taskrt.db import migrate
from taskrt.db.engine import create_engine
from taskrt.settings import Settings, load_settings

REPO_ROOT = Path(__file__).resolve().parents[1]
TASKRT = str(Path(sys.executable).with_name("taskrt"))
PG_ADMIN = os.environ.get("TASKRT_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TASKRT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "default"
"""The queue every benchmark uses (the workers' default)."""


@dataclass
class BenchTarget:
    """Where one benchmark runs: its database URL, Redis URL and key prefix."""

    database_url: str
    redis_url: str | None
    redis_prefix: str

    @property
    def backend(self) -> str:
        """``redis``, ``postgresql`` (the SQL queue on PostgreSQL) or ``sqlite``."""
        if self.redis_url:
            return "redis"
        return "sqlite" if self.database_url.startswith("sqlite") else "postgresql"

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

    def settings(self) -> Settings:
        """Settings for an in-process client on this target."""
        return load_settings(
            database_url=self.database_url,
            redis_url=self.redis_url,
            redis_prefix=self.redis_prefix,
            plugins_modules=["bench.handlers"],
            log_level="WARNING",
        )

    def client(self) -> Client:
        """An in-process client on this target (close it, or use it as a context manager)."""
        return Client(self.settings())


@contextmanager
def postgres_target(use_redis: bool = True) -> Iterator[BenchTarget]:
    """A fresh migrated PostgreSQL database (and Redis prefix) for one benchmark."""
    name = f"taskrt_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    url = f"{base}/{name}"
    prefix = f"bench{uuid.uuid4().hex[:8]}:"
    try:
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield BenchTarget(url, REDIS_URL if use_redis else None, prefix)
    finally:
        drop_redis_prefix(prefix)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def sqlite_target() -> Iterator[BenchTarget]:
    """A fresh migrated SQLite file for one benchmark."""
    with tempfile.TemporaryDirectory(prefix="taskrt-bench-") as folder:
        url = f"sqlite:///{folder}/taskrt.db"
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield BenchTarget(url, None, "")


@contextmanager
def target_for(backend: str) -> Iterator[BenchTarget]:
    """A fresh target for ``redis``, ``postgresql`` (SQL queue) or ``sqlite``."""
    if backend == "sqlite":
        with sqlite_target() as target:
            yield target
    elif backend in ("redis", "postgresql"):
        with postgres_target(use_redis=backend == "redis") as target:
            yield target
    else:
        raise ValueError(f"unknown backend {backend!r}")


def drop_redis_prefix(prefix: str) -> None:
    """UNLINK every Redis key under ``prefix`` (a benchmark's keys)."""
    if not prefix:
        return
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.unlink(*keys[start : start + 500])
    finally:
        client.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int | None:
    """Resident set size of process ``pid`` (VmRSS of /proc/<pid>/status), None if it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # the kernel writes kB (KiB)
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds process ``pid`` has used (/proc/<pid>/stat), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def server_pids() -> dict[int, str]:
    """The local PostgreSQL and Redis server processes (``postgresql`` or ``redis`` by pid),
    found by their command lines: every backend, the WAL writer and checkpointer included."""
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if command.startswith("postgres"):
            found[int(entry)] = "postgresql"
        elif command.startswith("redis-server"):
            found[int(entry)] = "redis"
    return found


def cpu_snapshot(worker_pids: Sequence[int]) -> dict[int, tuple[str, float]]:
    """CPU seconds so far of the worker processes and the servers, by pid."""
    groups = dict.fromkeys(worker_pids, "worker") | server_pids()
    snapshot: dict[int, tuple[str, float]] = {}
    for pid, group in groups.items():
        used = cpu_seconds(pid)
        if used is not None:
            snapshot[pid] = (group, used)
    return snapshot


def cpu_used(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds used between two snapshots, by group; a process that started in between
    (a new PostgreSQL backend) counts from zero."""
    used: dict[str, float] = {}
    for pid, (group, seconds) in after.items():
        start = before.get(pid, (group, 0.0))[1]
        used[group] = used.get(group, 0.0) + max(0.0, seconds - start)
    return used


def succeeded_runs(engine: sa.Engine) -> int:
    """How many runs have succeeded."""
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM task_runs WHERE status = 'succeeded'")
            ).scalar_one()
        )


def wait_succeeded(engine: sa.Engine, count: int, timeout: float = 60.0) -> int:
    """Poll until at least ``count`` runs succeeded (or ``timeout`` passes); the last count."""
    deadline = time.monotonic() + timeout
    done = succeeded_runs(engine)
    while done < count and time.monotonic() < deadline:
        time.sleep(0.05)
        done = succeeded_runs(engine)
    return done


def _tail(log: IO[bytes], limit: int = 2000) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode("utf-8", "replace")[-limit:]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def worker(
    target: BenchTarget, *args: str, settle: float = 1.5, **settings: object
) -> Iterator[subprocess.Popen[bytes]]:
    """A ``taskrt worker`` subprocess on ``target``, stopped with SIGTERM afterwards; waits
    ``settle`` seconds first so it can register and go idle.

    Its stderr goes to a temporary file (a pipe nobody reads would block a chatty worker) and
    is quoted if the worker dies early.
    """
    with tempfile.TemporaryFile(prefix="taskrt-bench-worker-") as log:
        proc = subprocess.Popen(
            [TASKRT, "worker", *args],
            env=target.env(**settings),
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            time.sleep(settle)
            if proc.poll() is not None:
                raise RuntimeError(f"taskrt worker exited with {proc.returncode}:\n{_tail(log)}")
            yield proc
            if proc.poll() is not None:
                raise RuntimeError(f"taskrt worker died with {proc.returncode}:\n{_tail(log)}")
        finally:
            _stop(proc)


def wait_for_workers(client: Client, count: int, timeout: float = 30.0) -> None:
    """Wait until ``count`` workers have registered (are online)."""
    deadline = time.monotonic() + timeout
    while len(client.service.workers(include_offline=False)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"fewer than {count} workers registered within {timeout:.0f} s")
        time.sleep(0.1)


@contextmanager
def api_server(
    target: BenchTarget,
    *,
    workers: int = 2,
    settle: float = 2.0,
    settings: Mapping[str, object] | None = None,
) -> Iterator[str]:
    """``taskrt api --workers N`` on a free port of 127.0.0.1 with extra ``settings``; yields
    its base URL once ``/readyz`` answers 200 and ``settle`` more seconds have passed."""
    import httpx

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile(prefix="taskrt-bench-api-") as log:
        proc = subprocess.Popen(
            [TASKRT, "api", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            env=target.env(**(settings or {})),
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            ready = 0
            while ready < 3:
                if proc.poll() is not None:
                    raise RuntimeError(f"taskrt api exited with {proc.returncode}:\n{_tail(log)}")
                try:
                    ok = httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    ok = False
                ready = ready + 1 if ok else 0
                if ok:
                    continue
                if time.monotonic() > deadline:
                    raise RuntimeError(f"taskrt api not ready within 60 s:\n{_tail(log)}")
                time.sleep(0.2)
            # one process answering does not mean the others have started: give them time
            time.sleep(settle)
            yield base_url
        finally:
            _stop(proc)
