"""A dedup key held by a live task: concurrent producers create one task (issue 3)."""

from __future__ import annotations

import json
import threading

import pytest

from taskrt.client import Client, EnqueueResult
from tests.acceptance.conftest import WorkerFactory
from tests.acceptance.helpers import wait_status
from tests.support.db import Db
from tests.support.procs import run_cli

pytestmark = pytest.mark.services

PRODUCERS = 20


def _concurrent_enqueues(client: Client, key: str) -> list[EnqueueResult]:
    """Twenty threads, each with its own client and connections, enqueue at the same moment."""
    clients = [Client(client.settings) for _ in range(PRODUCERS)]
    for c in clients:
        assert c.service is not None  # load plugins and connect before the race
        c.service.store.ping()
    barrier = threading.Barrier(PRODUCERS)
    results: list[EnqueueResult | None] = [None] * PRODUCERS
    errors: list[BaseException] = []

    def produce(i: int) -> None:
        try:
            barrier.wait(10)
            results[i] = clients[i].enqueue("example.echo", {"producer": i}, dedup_key=key)
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(PRODUCERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in clients:
        c.close()
    assert not errors, errors
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def test_twenty_concurrent_enqueues_with_one_dedup_key_create_one_task(
    client: Client, db: Db, service_env: dict[str, str], spawn: WorkerFactory
) -> None:
    results = _concurrent_enqueues(client, "order-42")
    assert sum(r.created for r in results) == 1
    assert len({r.id for r in results}) == 1
    task_id = results[0].id
    assert db.scalar("SELECT count(*) FROM tasks") == 1
    assert db.scalar("SELECT count(*) FROM task_runs") == 1
    assert db.scalar("SELECT dedup_key FROM tasks") == "order-42"

    # the CLI sees the same live task
    out = run_cli(
        ["enqueue", "example.echo", "--payload", "{}", "--dedup-key", "order-42", "--json"],
        service_env,
    ).stdout
    assert json.loads(out) == {
        "id": str(task_id),
        "created": False,
        "name": "example.echo",
        "queue": "default",
    }

    # once the task is finished, the key is free again (no worker runs during the race: a
    # task completed within it would free the key once more, rightly)
    worker = spawn(service_env, "w1")
    wait_status(db, task_id, "completed", timeout=30)
    assert worker.stop() == 0
    again = _concurrent_enqueues(client, "order-42")
    assert sum(r.created for r in again) == 1
    assert len({r.id for r in again}) == 1
    assert again[0].id != task_id
    spawn(service_env, "w2")
    wait_status(db, again[0].id, "completed", timeout=30)
    assert db.scalar("SELECT count(*) FROM tasks") == 2
    assert db.succeeded_runs_per_task() == {1: 2}
