"""Fixtures shared by every kind of test: isolated databases, Redis prefixes and settings."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskrt.client import Client
from taskrt.settings import load_settings
from tests.support import procs, services
from tests.support.db import Db

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_taskrt_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test inherits a developer's TASKRT_* settings (or the platform fallbacks)."""
    for name in list(os.environ):
        if name.startswith("TASKRT_") and not name.startswith("TASKRT_TEST_"):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL template database for this test session."""
    name = f"taskrt_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    services.migrated_template(name)
    yield name
    services.drop_database(name)


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test."""
    with services.cloned_database(pg_template) as url:
        yield url


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database with no tables at all."""
    name = f"taskrt_e_{uuid.uuid4().hex[:12]}"
    url = services.create_database(name)
    yield url
    services.drop_database(name)


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    client = services.redis_client()
    prefix = f"t{uuid.uuid4().hex[:10]}:"
    yield prefix
    services.delete_prefix(client, prefix)
    client.close()


@pytest.fixture
def redis_url() -> str:
    """URL of the test Redis server."""
    services.redis_client().close()
    return services.REDIS_URL


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database file in this test's temporary folder."""
    return services.sqlite_database(str(tmp_path / "taskrt.db"))


@pytest.fixture
def db(pg_url: str) -> Iterator[Db]:
    """Read access to this test's PostgreSQL database."""
    handle = Db(pg_url)
    yield handle
    handle.close()


@pytest.fixture
def service_env(pg_url: str, redis_url: str, redis_prefix: str) -> dict[str, str]:
    """Environment for taskrt subprocesses on this test's database and Redis prefix, with short
    maintenance intervals so recovery scenarios finish quickly."""
    return procs.service_env(
        pg_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        maintenance_interval=0.2,
        heartbeat_interval=0.5,
        log_level="INFO",
    )


@pytest.fixture
def client(pg_url: str, redis_url: str, redis_prefix: str) -> Iterator[Client]:
    """A Python client on this test's database and Redis prefix (test task types loaded)."""
    settings = load_settings(
        database_url=pg_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        plugins_modules=["tests.support.testkit"],
    )
    with Client(settings) as handle:
        yield handle
