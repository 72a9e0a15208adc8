"""Cancellation: a queued task never runs; a running one (async or sync) ends ``cancelled``
within about one heartbeat interval (issue 3, "Done when": cancel)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis

from taskrt.client import Client
from taskrt.queue.keyspace import Keyspace
from tests.acceptance.conftest import WorkerFactory
from tests.acceptance.helpers import (
    redis_list,
    redis_zset,
    task_row,
    wait_run_running,
    wait_status,
)
from tests.support.db import Db
from tests.support.procs import run_cli, wait_for

pytestmark = pytest.mark.services

# service_env's heartbeat interval is 0.5 s: "within one heartbeat interval plus a little",
# asserted with a generous bound because this checks correctness, not speed
CANCEL_BOUND = 5.0


def test_cancelled_queued_task_never_runs(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    keys: Keyspace,
) -> None:
    k = keys.queue("default")
    ready = client.enqueue("example.echo", {"n": 1})
    later = client.enqueue("example.echo", {"n": 2}, delay=1)
    (ready_run,) = db.runs(ready.id)
    (later_run,) = db.runs(later.id)
    assert redis_list(rds, k.ready) == [str(ready_run.id)]
    assert redis_zset(rds, k.delayed) == [str(later_run.id)]

    out = run_cli(["task", "cancel", str(ready.id)], service_env).stdout
    assert f"task {ready.id} cancelled" in out
    client.cancel(later.id)

    for task_id in (ready.id, later.id):
        task = task_row(db, task_id)
        assert task.status == "cancelled"
        assert task.finished_at is not None
        assert task.cancel_requested_at is not None
        (run,) = db.runs(task_id)
        assert run.status == "cancelled"
        assert run.outcome_reason == "cancelled"
        assert run.started_at is None
        assert run.finished_at is not None
    assert redis_list(rds, k.ready) == []
    assert redis_zset(rds, k.delayed) == []

    # a worker comes, runs the next task, and never touches the cancelled ones
    spawn(service_env, "w1")
    marker = client.enqueue("example.echo", {"n": 3})
    # due after the cancelled delayed task: once it ran, that one's due time has passed too
    late_marker = client.enqueue("example.echo", {"n": 4}, delay=1)
    wait_status(db, marker.id, "completed", timeout=30)
    wait_status(db, late_marker.id, "completed", timeout=30)
    for task_id in (ready.id, later.id):
        assert task_row(db, task_id).status == "cancelled"
        (run,) = db.runs(task_id)
        assert run.status == "cancelled"
        assert run.started_at is None
        assert run.worker_id is None
    assert db.scalar("SELECT count(*) FROM task_runs WHERE started_at IS NOT NULL") == 2


@pytest.mark.parametrize(
    ("name", "payload"),
    [("example.sleep", {"ms": 30000}), ("testkit.block", {"seconds": 30})],
    ids=["async-sleep", "sync-block"],
)
def test_cancelling_a_running_task_ends_it_cancelled_within_a_heartbeat(
    name: str,
    payload: dict[str, int],
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    keys: Keyspace,
) -> None:
    k = keys.queue("default")
    worker = spawn(service_env, "w1", "-c", "2")
    result = client.enqueue(name, payload)
    wait_run_running(db, result.id, 1)

    start = time.monotonic()
    record = client.cancel(result.id)
    assert record.status.value == "running"  # a running task is asked to stop
    assert record.cancel_requested_at is not None
    wait_status(db, result.id, "cancelled", timeout=CANCEL_BOUND + 5)
    elapsed = time.monotonic() - start
    assert elapsed < CANCEL_BOUND, f"cancellation took {elapsed:.2f} s"

    task = task_row(db, result.id)
    (run,) = db.runs(result.id)
    assert run.status == "cancelled"
    assert run.outcome_reason == "cancelled"
    assert run.started_at is not None
    assert run.finished_at - task.cancel_requested_at < timedelta(seconds=CANCEL_BOUND)
    wait_for(lambda: rds.zcard(k.inflight) == 0, 5, message="the lease released")
    assert rds.hlen(k.leases) == 0

    # the slot is free again: the worker goes on with the next task
    follow = client.enqueue("example.echo", {"after": "cancel"})
    wait_status(db, follow.id, "completed", timeout=30)
    assert worker.stop() == 0
