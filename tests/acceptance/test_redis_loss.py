"""Losing Redis loses no task: the reconciler rebuilds the queues from PostgreSQL (see
"Failure modes" in docs/concepts/lifecycle.md).

``FLUSHALL`` would wipe the keys of every test running on this server, so the loss is made by
deleting every key under this test's prefix: for this test's workers it is the same thing.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
import redis

from taskrt.client import Client
from taskrt.queue.keyspace import Keyspace
from tests.acceptance.conftest import WorkerFactory
from tests.support import services
from tests.support.db import Db
from tests.support.procs import wait_for

pytestmark = pytest.mark.services

DELAY = 5.0


@pytest.fixture
def recovery_env(service_env: dict[str, str]) -> dict[str, str]:
    """Reconcile every second, and treat runs older than 0.5 s + 1 s as settled (the defaults,
    60 s and 5 s, would only make the test slow)."""
    return {**service_env, "TASKRT_RECONCILE_INTERVAL": "1", "TASKRT_OUTBOX_GRACE": "0.5"}


def test_tasks_enqueued_before_redis_lost_its_data_all_complete_on_time(
    client: Client,
    db: Db,
    recovery_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    redis_prefix: str,
    keys: Keyspace,
) -> None:
    specs = [
        {
            "name": "example.echo",
            "payload": {"i": i},
            "queue": "high" if i % 2 else "default",
            **({"delay": DELAY} if i % 3 == 0 else {}),
        }
        for i in range(300)
    ]
    results = client.enqueue_many(specs)
    delayed = {r.id for r, spec in zip(results, specs, strict=True) if "delay" in spec}
    assert len(delayed) == 100
    assert rds.llen(keys.queue("high").ready) + rds.llen(keys.queue("default").ready) == 200

    services.delete_prefix(rds, redis_prefix)  # the loss: nothing of this test is left
    assert list(rds.scan_iter(match=f"{redis_prefix}*")) == []

    worker = spawn(recovery_env, "w1", "--queues", "high,default", "-c", "8")
    # the reconciler puts the delayed runs back in the delayed zsets, not in the ready lists
    wait_for(
        lambda: sum(rds.zcard(keys.queue(q).delayed) for q in ("high", "default")) == 100,
        DELAY,
        interval=0.05,
        message="the delayed runs back in their zsets before they fall due",
    )
    wait_for(
        lambda: db.task_statuses().get("completed", 0) == 300,
        60,
        message="300 completed tasks",
    )
    assert db.task_statuses() == {"completed": 300}
    assert db.succeeded_runs_per_task() == {1: 300}
    assert db.scalar("SELECT count(*) FROM task_runs") == 300
    assert "were missing from Redis; dispatched again" in worker.log()

    rows = db.rows(
        "SELECT t.id, t.created_at, r.started_at FROM tasks t JOIN task_runs r ON r.task_id = t.id"
    )
    for task_id, created_at, started_at in rows:
        if task_id in delayed:  # PostgreSQL's clock on both sides
            assert started_at - created_at >= timedelta(seconds=DELAY), task_id
    assert worker.stop() == 0


def test_redis_losing_its_data_under_a_busy_worker_loses_nothing(
    client: Client,
    db: Db,
    recovery_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    redis_prefix: str,
) -> None:
    worker = spawn(recovery_env, "w1", "-c", "4", "--lease-ttl", "2")
    results = client.enqueue_many(
        [{"name": "example.sleep", "payload": {"ms": 300}} for _ in range(40)]
    )
    wait_for(
        lambda: db.scalar("SELECT count(*) FROM task_runs WHERE status = 'running'") == 4,
        30,
        message="four runs running",
    )
    services.delete_prefix(rds, redis_prefix)  # running, queued and leased entries all gone

    wait_for(
        lambda: db.task_statuses().get("completed", 0) == len(results),
        60,
        message="every task completed",
    )
    assert db.succeeded_runs_per_task() == {1: len(results)}
    # the runs in flight kept their leases (renewal writes a missing lease back): none was lost
    assert db.scalar("SELECT count(*) FROM task_runs WHERE status <> 'succeeded'") == 0
    assert worker.stop() == 0


def test_with_default_settings_work_flows_again_within_10s_of_a_flush(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    redis_prefix: str,
    keys: Keyspace,
) -> None:
    """Issue 12, defect 8: the loss is noticed by the next maintenance pass (a marker key
    gone), not by the reconcile a minute later; nothing runs twice."""
    workers = [spawn(service_env, f"w{i}", "-c", "2") for i in (1, 2)]
    wait_for(
        lambda: rds.exists(keys.index_marker) == 1,
        30,
        message="the workers' first pass to build the queues",
    )
    busy = client.enqueue_many(
        [{"name": "example.sleep", "payload": {"ms": 200}} for _ in range(24)]
    )
    later = client.enqueue_many(
        [{"name": "example.echo", "payload": {"i": i}, "delay": 2} for i in range(6)]
    )
    wait_for(
        lambda: db.scalar("SELECT count(*) FROM task_runs WHERE status = 'running'") >= 2,
        30,
        message="runs running",
    )
    services.delete_prefix(rds, redis_prefix)  # ready, delayed, leases, marker: all gone
    lost_at = time.monotonic()

    everything = {r.id for r in busy} | {r.id for r in later}
    wait_for(
        lambda: db.task_statuses().get("completed", 0) == len(everything),
        10,
        message="every task completed within 10 s of the flush",
    )
    assert time.monotonic() - lost_at < 10
    assert db.succeeded_runs_per_task() == {1: len(everything)}
    assert db.scalar("SELECT count(*) FROM task_runs") == len(everything)  # none ran twice
    for task in later:
        (run,) = db.runs(task.id)
        assert run.started_at >= run.available_at  # PostgreSQL's clock on both sides
    assert any("rebuilt the queues from the database" in w.log() for w in workers)
    for worker in workers:
        assert worker.stop() == 0
