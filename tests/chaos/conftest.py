"""Fixtures of the chaos suite: one private PostgreSQL cluster and one private Redis server per
test session (they are restarted, crashed, frozen and skewed, so they are never the shared
ones), a fresh database and an empty Redis for every test, real ``taskrt worker`` processes,
and the servers' and workers' logs attached to the report of a test that fails."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import Chaos
from tests.chaos.servers import PostgresServer, RedisServer, migrated_postgres

TEMPLATE = "taskrt_chaos_template"


@pytest.fixture(scope="session")
def chaos_postgres() -> Iterator[PostgresServer]:
    """A private PostgreSQL cluster holding a migrated template database."""
    with migrated_postgres(TEMPLATE) as server:
        yield server


@pytest.fixture(scope="session")
def chaos_redis() -> Iterator[RedisServer]:
    """A private Redis server without persistence."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.destroy()


@pytest.fixture
def chaos(
    chaos_postgres: PostgresServer,
    chaos_redis: RedisServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Chaos]:
    """Both servers healthy (running, thawed, true clocks), a fresh database, an empty Redis;
    every worker the test started is stopped afterwards."""
    chaos_postgres.reset()
    chaos_redis.reset()
    database = f"chaos_{uuid.uuid4().hex[:10]}"
    url = chaos_postgres.create_database(database, template=TEMPLATE)
    harness = Chaos(chaos_postgres, chaos_redis, url, tmp_path)
    request.node.chaos_harness = harness
    try:
        yield harness
    finally:
        harness.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[Any]:
    """On failure, add the ends of the servers' and workers' logs to the report."""
    outcome: Any = yield
    report = outcome.get_result()
    harness = getattr(item, "chaos_harness", None)
    if harness is None or not report.failed or call.when != "call":
        return
    for title, text in harness.log_sections():
        report.sections.append((title, text))
