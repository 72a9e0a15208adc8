"""Retries follow their strategy; exhausted tasks land in the dead-letter queue; replays are
exactly-once even when they race (issue 3, "Done when": flaky, always failing, replay)."""

from __future__ import annotations

import json
import subprocess
import threading
import uuid
from datetime import timedelta

import pytest
import redis

from taskrt.client import Client
from taskrt.queue.keyspace import Keyspace
from taskrt.settings import Settings
from tests.acceptance.conftest import WorkerFactory
from tests.acceptance.helpers import redis_list, task_row, wait_status
from tests.support.db import Db
from tests.support.procs import REPO_ROOT, TASKRT, run_cli, wait_for

pytestmark = pytest.mark.services

SLACK = timedelta(milliseconds=50)


def test_flaky_task_is_retried_with_the_strategy_delays_and_completes_on_attempt_3(
    client: Client, db: Db, service_env: dict[str, str], spawn: WorkerFactory
) -> None:
    spawn(service_env, "w1", "-c", "2")
    result = client.enqueue(
        "example.flaky",
        {"succeed_on_attempt": 3},
        max_retries=3,
        retry="exponential",
        retry_params={"base": 0.3, "factor": 2},
    )
    wait_status(db, result.id, "completed", timeout=30)

    task = task_row(db, result.id)
    assert task.retry_count == 2
    assert task.failure_reason is None
    assert task.finished_at is not None
    runs = db.runs(result.id)
    assert [r.attempt for r in runs] == [1, 2, 3]
    assert [r.status for r in runs] == ["failed", "failed", "succeeded"]
    for run in runs:
        assert run.worker_id is not None
        assert run.started_at is not None
        assert run.finished_at is not None
        assert run.started_at <= run.finished_at
    for run in runs[:2]:
        assert run.outcome_reason == "error"
        assert run.error_type == "taskrt_handlers_example.plugin.FlakyError"
        assert run.error_message == f"attempt {run.attempt} fails before 3"
        assert "Traceback (most recent call last)" in run.error_traceback
        assert "FlakyError" in run.error_traceback
        assert run.next_retry_at is not None
    assert runs[2].result == {"succeeded_on_attempt": 3}
    assert runs[2].error_type is None
    assert runs[2].next_retry_at is None

    # the gaps follow the strategy: exponential 0.3 s, then 0.6 s (both clocks: PostgreSQL)
    for failed, following, delay in ((runs[0], runs[1], 0.3), (runs[1], runs[2], 0.6)):
        planned = failed.next_retry_at - failed.finished_at
        assert abs(planned - timedelta(seconds=delay)) < SLACK, planned
        assert following.started_at >= failed.next_retry_at
        assert following.started_at - failed.finished_at >= timedelta(seconds=delay)
        # correctness, not speed: the retry did happen soon after it fell due
        assert following.started_at - failed.next_retry_at < timedelta(seconds=5)


def _replay_threads(settings: Settings, task_id: uuid.UUID, count: int) -> list[list[uuid.UUID]]:
    """``count`` threads, each with its own client (own connections), replaying at once."""
    clients = [Client(settings) for _ in range(count)]
    for c in clients:
        assert c.service is not None  # connect and load plugins before the race starts
    barrier = threading.Barrier(count)
    replayed: list[list[uuid.UUID]] = [[] for _ in range(count)]
    errors: list[BaseException] = []

    def replay(i: int) -> None:
        try:
            barrier.wait(10)
            replayed[i] = clients[i].service.replay("default", [task_id]).replayed
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    threads = [threading.Thread(target=replay, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for c in clients:
        c.close()
    assert not errors, errors
    return replayed


def test_always_failing_task_is_dead_lettered_and_replays_create_exactly_one_run(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    keys: Keyspace,
) -> None:
    dlq = keys.queue("default").dlq
    worker = spawn(service_env, "w1", "-c", "2")
    result = client.enqueue("testkit.fail", {}, max_retries=2)
    wait_status(db, result.id, "failed", timeout=30)
    task_id = str(result.id)

    task = task_row(db, task_id)
    assert task.failure_reason == "retries_exhausted"
    runs = db.runs(task_id)
    assert [r.attempt for r in runs] == [1, 2, 3]
    assert [r.status for r in runs] == ["failed"] * 3
    assert [r.outcome_reason for r in runs] == ["error", "error", "retries_exhausted"]
    assert [r.error_message for r in runs] == [f"attempt {n} failed on purpose" for n in (1, 2, 3)]
    assert all(r.error_type == "RuntimeError" for r in runs)
    assert [r.next_retry_at is not None for r in runs] == [True, True, False]
    wait_for(lambda: redis_list(rds, dlq) == [task_id], 10, message="the task id in the dlq list")

    listed = json.loads(run_cli(["dlq", "list", "default", "--json"], service_env).stdout)
    assert [t["id"] for t in listed] == [task_id]
    assert listed[0]["failure_reason"] == "retries_exhausted"
    assert listed[0]["runs"][0]["attempt"] == 3

    # a replay gives the task a fresh run (attempt 4) and a fresh retry budget
    out = run_cli(["dlq", "replay", "default", task_id], service_env).stdout
    assert "replayed 1 task(s)" in out
    wait_for(lambda: len(db.runs(task_id)) >= 4, 10, message="a 4th run")
    wait_status(db, task_id, "failed", timeout=30)
    runs = db.runs(task_id)
    assert [r.attempt for r in runs] == [1, 2, 3, 4, 5, 6]
    assert all(r.status == "failed" for r in runs)
    assert runs[3].started_at > runs[2].finished_at
    wait_for(lambda: redis_list(rds, dlq) == [task_id], 10, message="dead-lettered again, once")

    # with no worker running, two concurrent `taskrt dlq replay` commands: one new run
    assert worker.stop() == 0
    env = {**service_env}
    procs = [
        subprocess.Popen(
            [TASKRT, "dlq", "replay", "default", task_id, "--json"],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    replies = [json.loads(out) for out, _err in outputs]
    assert sorted(len(r["replayed"]) for r in replies) == [0, 1], replies
    runs = db.runs(task_id)
    assert [r.attempt for r in runs] == [1, 2, 3, 4, 5, 6, 7]
    assert runs[6].status == "queued"
    assert task_row(db, task_id).status == "queued"
    assert redis_list(rds, dlq) == []
    assert redis_list(rds, keys.queue("default").ready) == [str(runs[6].id)]

    # the same race between eight threads of the service layer: still exactly one new run
    spawn(service_env, "w2", "-c", "2")
    wait_status(db, task_id, "failed", timeout=30)
    assert len(db.runs(task_id)) == 9
    replayed = _replay_threads(client.settings, result.id, 8)
    assert sorted(len(r) for r in replayed) == [0] * 7 + [1]
    wait_for(lambda: len(db.runs(task_id)) >= 10, 10, message="a 10th run")
    wait_status(db, task_id, "failed", timeout=30)
    runs = db.runs(task_id)
    assert [r.attempt for r in runs] == list(range(1, 13))
    assert all(r.status == "failed" for r in runs)
    wait_for(lambda: redis_list(rds, dlq) == [task_id], 10, message="dead-lettered once")


def test_retry_with_an_explicit_delay_waits_that_long(
    client: Client, db: Db, service_env: dict[str, str], spawn: WorkerFactory
) -> None:
    spawn(service_env, "w1")
    result = client.enqueue("testkit.retry_later", {"delay": 0.7})
    wait_status(db, result.id, "completed", timeout=30)
    runs = db.runs(result.id)
    assert [(r.attempt, r.status) for r in runs] == [(1, "failed"), (2, "succeeded")]
    first, second = runs
    assert first.outcome_reason == "retry_requested"
    assert first.error_type == "taskrt.exceptions.Retry"
    assert abs(first.next_retry_at - first.finished_at - timedelta(seconds=0.7)) < SLACK
    assert second.started_at >= first.next_retry_at
    assert second.result == "second time lucky"
    assert task_row(db, result.id).retry_count == 1


def test_non_retryable_error_dead_letters_after_one_run(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    keys: Keyspace,
) -> None:
    spawn(service_env, "w1")
    result = client.enqueue("testkit.nonretryable", {})
    wait_status(db, result.id, "failed", timeout=30)
    task = task_row(db, result.id)
    assert task.max_retries == 5
    assert task.failure_reason == "non_retryable"
    (run,) = db.runs(result.id)
    assert run.status == "failed"
    assert run.outcome_reason == "non_retryable"
    assert run.error_type == "taskrt.exceptions.NonRetryableError"
    assert run.error_message == "this cannot work"
    assert run.next_retry_at is None
    wait_for(
        lambda: redis_list(rds, keys.queue("default").dlq) == [str(result.id)],
        10,
        message="the task in the dlq list",
    )
