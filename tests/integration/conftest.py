"""Fixtures for backend-level integration tests (real PostgreSQL and Redis, no subprocesses)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskrt.db.engine import create_engine
from taskrt.queue.redis_backend import RedisQueueBackend
from taskrt.runtime import Runtime
from taskrt.service import TaskService
from taskrt.settings import Settings, load_settings
from taskrt.store import Store


@pytest.fixture
def settings(pg_url: str, redis_url: str, redis_prefix: str) -> Settings:
    """Settings on this test's database and Redis prefix, with the test task types."""
    return load_settings(
        database_url=pg_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        plugins_modules=["tests.support.testkit"],
        outbox_grace=0.0,
    )


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    """The store on this test's database (with outbox rows: the backend is Redis's)."""
    handle = Store(create_engine(settings.database_url), outbox=True)
    yield handle
    handle.dispose()


@pytest.fixture
def backend(store: Store, settings: Settings) -> Iterator[RedisQueueBackend]:
    """The Redis queue backend on this test's prefix."""
    handle = RedisQueueBackend.from_settings(store, settings)
    yield handle
    handle.close()


@pytest.fixture
def service(settings: Settings, store: Store, backend: RedisQueueBackend) -> TaskService:
    """The service layer over this test's store and backend."""
    return TaskService(Runtime.load(settings), store, backend)
