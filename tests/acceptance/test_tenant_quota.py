"""A tenant's quota holds across two real ``taskrt api`` processes (issue 16, plan 11.3):
tenant q with ``--max-queued 100`` and no workers; 8 threads post 200 single enqueues to the
two servers in turn; exactly 100 are accepted and 100 refused with 429, and 100 are stored.
The same with ``--enqueue-rate``, a batch crossing the limit, and the command line's error."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from taskrt.apikeys import create_api_key
from taskrt.auth import Role
from taskrt.db.engine import create_engine
from taskrt.store import Store
from tests.api.support import ApiProcess
from tests.support.procs import run_cli

pytestmark = [pytest.mark.services, pytest.mark.slow]

ECHO = {"name": "example.echo", "payload": {"hi": 1}}


@pytest.fixture
def env(service_env: dict[str, str]) -> dict[str, str]:
    """The services' environment, API keys only, and no per-key rate limit in the way."""
    return {
        **service_env,
        "TASKRT_AUTH_BACKENDS": "apikey",
        "TASKRT_RATE_LIMIT_ENABLED": "false",
    }


@pytest.fixture
def store(pg_url: str) -> Iterator[Store]:
    handle = Store(create_engine(pg_url))
    yield handle
    handle.dispose()


@pytest.fixture
def servers(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[[], list[ApiProcess]]]:
    started: list[ApiProcess] = []

    def start() -> list[ApiProcess]:
        for name in ("api-a", "api-b"):
            started.append(ApiProcess(env, tmp_path / f"{name}.log").start())
        return started

    yield start
    for proc in started:
        proc.stop()


def _tenant(env: dict[str, str], name: str, *options: str) -> dict[str, Any]:
    """``taskrt tenants create NAME OPTIONS --json``, through the real command line."""
    done = run_cli(["tenants", "create", name, *options, "--json"], env)
    created: dict[str, Any] = json.loads(done.stdout)
    return created


def _producer(store: Store, tenant: str) -> dict[str, str]:
    _, key = create_api_key(
        store, name=f"producer-{uuid.uuid4().hex[:6]}", role=Role.PRODUCER, tenant=tenant
    )
    return {"Authorization": f"Bearer {key}"}


def _post_all(
    servers: list[ApiProcess], headers: dict[str, str], count: int
) -> list[httpx.Response]:
    """``count`` single enqueues from 8 threads, alternating between the servers."""
    local = threading.local()

    def client(i: int) -> httpx.Client:
        if not hasattr(local, "clients"):
            local.clients = [s.client(**headers) for s in servers]
        result: httpx.Client = local.clients[i % len(servers)]
        return result

    def post(i: int) -> httpx.Response:
        return client(i).post("/api/v1/tasks", json=ECHO)

    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(post, range(count)))


def _stored(store: Store, table: sa.Table, tenant: str) -> int:
    with store.connection() as conn:
        stmt = sa.select(sa.func.count()).select_from(table).where(table.c.tenant == tenant)
        return int(conn.execute(stmt).scalar_one())


def test_max_queued_holds_exactly_across_two_api_processes(
    env: dict[str, str], store: Store, servers: Callable[[], list[ApiProcess]]
) -> None:
    from taskrt.db.models import outbox, task_runs, tasks

    created = _tenant(env, "q", "--max-queued", "100")
    assert (created["name"], created["max_queued"], created["queued"]) == ("q", 100, 0)
    headers = _producer(store, "q")
    apis = servers()

    responses = _post_all(apis, headers, 200)

    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 100, [r.text for r in responses if r.status_code not in (201, 429)]
    assert codes.count(429) == 100
    for refused in (r for r in responses if r.status_code == 429):
        body = refused.json()
        assert body["type"] == "urn:taskrt:problem:quota-exceeded"
        assert (body["quota"], body["limit"]) == ("max-queued", 100)
    assert _stored(store, tasks, "q") == 100
    assert _stored(store, task_runs, "q") == 100
    assert _stored(store, outbox, "q") <= 100  # the relay may have sent some already

    # a batch that would cross the limit stores nothing, on either server
    with apis[1].client(**headers) as http:
        batch = http.post("/api/v1/tasks/batch", json={"tasks": [ECHO, ECHO]})
    assert batch.status_code == 429
    assert _stored(store, tasks, "q") == 100

    # the command line refuses with the quota's name and exit code 1
    refused = run_cli(
        ["--tenant", "q", "enqueue", "example.echo", "--payload", "{}"], env, check=False
    )
    assert refused.returncode == 1
    assert "Error: quota exceeded: tenant 'q' reached its max-queued quota (100)" in refused.stderr
    assert _stored(store, tasks, "q") == 100
    shown = json.loads(run_cli(["tenants", "show", "q", "--json"], env).stdout)
    assert shown["queued"] == 100


def test_enqueue_rate_holds_across_two_api_processes_with_retry_after(
    env: dict[str, str], store: Store, servers: Callable[[], list[ApiProcess]]
) -> None:
    from taskrt.db.models import tasks

    _tenant(env, "r", "--enqueue-rate", "50/hour")
    headers = _producer(store, "r")
    apis = servers()

    responses = _post_all(apis, headers, 80)

    accepted = [r for r in responses if r.status_code == 201]
    refused = [r for r in responses if r.status_code == 429]
    # the bucket refills 50 tokens an hour: during the burst, under one more may come back
    assert 50 <= len(accepted) <= 51, [r.status_code for r in responses]
    assert len(accepted) + len(refused) == 80
    for response in refused:
        assert response.json()["quota"] == "enqueue-rate"
        assert 1 <= int(response.headers["Retry-After"]) <= 3600
    assert _stored(store, tasks, "r") == len(accepted)
