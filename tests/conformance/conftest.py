"""One set of test bodies, every queue backend: Redis, SQL on PostgreSQL, SQL on SQLite.

The ``stack`` fixture is parametrized over the three; a test written against it must pass on
each, which is what "the worker, the API and the scheduler do not know which backend they talk
to" means in practice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskrt.backends import open_queue_backend, open_store
from taskrt.queue.base import QueueBackend
from taskrt.runtime import Runtime
from taskrt.service import TaskService
from taskrt.settings import Settings, load_settings
from taskrt.store import Store
from tests.support import procs, services

BACKENDS = ("redis", "postgresql", "sqlite")


@dataclass
class Stack:
    """Everything a conformance test needs, on one backend."""

    kind: str
    settings: Settings
    store: Store
    backend: QueueBackend
    service: TaskService
    env: dict[str, str]
    """Environment for worker subprocesses on the same database and queues."""


@pytest.fixture(params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A store, queue backend and service on one backend (each test gets fresh ones)."""
    kind: str = request.param
    redis_url = redis_prefix = None
    if kind == "sqlite":
        database_url = services.sqlite_database(str(tmp_path / "taskrt.db"))
    else:
        database_url = request.getfixturevalue("pg_url")
    if kind == "redis":
        redis_url = request.getfixturevalue("redis_url")
        redis_prefix = request.getfixturevalue("redis_prefix")
    settings = load_settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix or "",
        plugins_modules=["tests.support.testkit"],
        outbox_grace=0.0,
    )
    store = open_store(settings)
    backend = open_queue_backend(settings, store)
    service = TaskService(Runtime.load(settings), store, backend)
    env = procs.service_env(
        database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        maintenance_interval=0.2,
        heartbeat_interval=0.5,
    )
    yield Stack(kind, settings, store, backend, service, env)
    backend.close()
    store.dispose()
