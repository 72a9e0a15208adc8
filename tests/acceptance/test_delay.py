"""Delayed tasks do not start before their due time by the PostgreSQL clock (issue 3)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import redis

from taskrt.client import Client
from taskrt.queue.keyspace import Keyspace
from tests.acceptance.conftest import WorkerFactory
from tests.acceptance.helpers import redis_list, redis_zset, task_row, wait_status
from tests.support.db import Db
from tests.support.procs import wait_for

pytestmark = pytest.mark.services


def test_delayed_task_waits_while_a_later_undelayed_task_runs_first(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    keys: Keyspace,
) -> None:
    k = keys.queue("default")
    worker = spawn(service_env, "w1", "-c", "2")
    wait_for(
        lambda: db.scalar("SELECT count(*) FROM workers WHERE status = 'online'") == 1,
        30,
        message="the worker to register",
    )
    delayed = client.enqueue("example.echo", {"which": "delayed"}, delay=2)
    prompt = client.enqueue("example.echo", {"which": "prompt"})

    # the delayed run waits in the delayed zset, scored with its due time (ms, rounded up)
    delayed_run = db.runs(delayed.id)[0]
    assert redis_zset(rds, k.delayed) == [str(delayed_run.id)]
    score = rds.zscore(k.delayed, str(delayed_run.id))
    assert score is not None
    assert score >= delayed_run.available_at.timestamp() * 1000
    assert str(delayed_run.id) not in redis_list(rds, k.ready)

    wait_status(db, prompt.id, "completed", timeout=15)
    wait_status(db, delayed.id, "completed", timeout=15)

    task = task_row(db, delayed.id)
    (run,) = db.runs(delayed.id)
    (prompt_run,) = db.runs(prompt.id)
    assert run.status == "succeeded"
    assert run.available_at - task.created_at >= timedelta(seconds=2)
    # both timestamps written by PostgreSQL: the run did not start before its 2 s delay
    assert run.started_at - task.created_at >= timedelta(seconds=2)
    assert run.started_at >= run.available_at
    assert prompt_run.started_at < run.started_at
    assert worker.stop() == 0
