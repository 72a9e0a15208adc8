"""Fixtures of the lifecycle acceptance tests: a raw Redis client on the test's prefix, the
prefix's keyspace, and a factory for worker processes that are always stopped afterwards."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
import redis

from taskrt.queue.keyspace import Keyspace
from tests.support import services
from tests.support.procs import WorkerProcess

WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def rds() -> Iterator[redis.Redis]:
    """A plain Redis client on the test server (raw bytes, like the worker sees them)."""
    client = services.redis_client()
    yield client
    client.close()


@pytest.fixture
def keys(redis_prefix: str) -> Keyspace:
    """The key names of this test's prefix."""
    return Keyspace(redis_prefix)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[WorkerFactory]:
    """``spawn(env, name, *worker_args)`` starts a ``taskrt worker`` logging to
    ``tmp_path/<name>.log``; every worker still alive at teardown is stopped (or killed)."""
    started: list[WorkerProcess] = []

    def start(env: Mapping[str, str], name: str, *args: str) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / f"{name}.log", "--name", name, *args).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop(timeout=10)
