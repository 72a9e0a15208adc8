"""Workers that die or freeze lose nothing and complete nothing twice: SIGKILL, SIGSTOP fencing
and poison tasks (issue 3, "Done when": SIGKILL, fencing, os._exit)."""

from __future__ import annotations

import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis

from taskrt.client import Client
from taskrt.queue.keyspace import Keyspace
from tests.acceptance.conftest import WorkerFactory
from tests.acceptance.helpers import redis_list, task_row, wait_run_running, wait_status
from tests.support.db import Db
from tests.support.procs import WorkerProcess, wait_for

pytestmark = pytest.mark.services


def _instance_id(db: Db, worker: WorkerProcess) -> uuid.UUID:
    """The ``workers`` row id of the running process ``worker``."""
    return wait_for(
        lambda: db.scalar(
            "SELECT id FROM workers WHERE pid = :p AND status <> 'offline' "
            "ORDER BY started_at DESC LIMIT 1",
            p=worker.pid,
        ),
        30,
        message=f"worker pid {worker.pid} registered",
    )


def _running_runs(db: Db, worker_id: uuid.UUID) -> set[uuid.UUID]:
    return {
        row[0]
        for row in db.rows(
            "SELECT id FROM task_runs WHERE worker_id = :w AND status = 'running'", w=worker_id
        )
    }


def test_sigkilled_worker_loses_no_task_and_completes_none_twice(
    client: Client, db: Db, service_env: dict[str, str], spawn: WorkerFactory
) -> None:
    rng = random.Random(3)
    client.enqueue_many(
        [{"name": "example.sleep", "payload": {"ms": rng.randint(50, 200)}} for _ in range(500)]
    )
    args = ("-c", "4", "--lease-ttl", "2")
    victim = spawn(service_env, "victim", *args)
    spawn(service_env, "steady", *args)

    killed: dict[uuid.UUID, set[uuid.UUID]] = {}
    instance = _instance_id(db, victim)
    wait_for(lambda: _running_runs(db, instance), 30, interval=0.01, message="victim busy")
    # the scenario's schedule: the first kill a second into the work, then one every 3 s
    # (the 500 tasks take about 8 s of eight slots, so all three kills hit a busy worker)
    kill_at = time.monotonic() + 1.0
    for _round in range(3):
        instance = _instance_id(db, victim)
        time.sleep(max(kill_at - time.monotonic(), 0.0))
        held = wait_for(
            lambda i=instance: _running_runs(db, i),
            10,
            interval=0.01,
            message="the victim holding runs when it is killed",
        )
        victim.signal(signal.SIGKILL)
        victim.wait(10)
        killed[instance] = held
        kill_at += 3.0
        victim.start()

    wait_for(
        lambda: db.task_statuses().get("completed", 0) == 500,
        120,
        message="500 completed tasks",
    )
    assert db.task_statuses() == {"completed": 500}
    assert db.succeeded_runs_per_task() == {1: 500}  # no task has two succeeded runs

    statuses = Counter(row[0] for row in db.rows("SELECT status FROM task_runs"))
    assert set(statuses) <= {"succeeded", "lost"}, statuses
    lost = db.rows("SELECT * FROM task_runs WHERE status = 'lost'")
    assert lost, "the kills hit no running run"
    for run in lost:
        assert run.outcome_reason == "lease_expired"
        assert run.error_type == "LeaseExpired"
        assert run.worker_id in killed  # only killed workers lost runs
        assert run.finished_at is not None
        following = [r for r in db.runs(run.task_id) if r.attempt == run.attempt + 1]
        assert following, f"lost run {run.id} was not followed by a new attempt"
    # every run a killed worker held when it died ended lost (or had just succeeded)
    for instance, held in killed.items():
        ended = {
            row.id: row.status
            for row in db.rows("SELECT id, status FROM task_runs WHERE worker_id = :w", w=instance)
        }
        assert all(ended[run_id] in ("lost", "succeeded") for run_id in held)
        assert any(ended[run_id] == "lost" for run_id in held), f"kill of {instance} lost nothing"
        assert all(status in ("lost", "succeeded") for status in ended.values())
    assert db.scalar("SELECT sum(lost_runs) FROM tasks") == len(lost)


def test_frozen_worker_loses_its_task_and_its_late_completion_is_rejected(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    keys: Keyspace,
) -> None:
    k = keys.queue("default")
    frozen = spawn(service_env, "frozen", "-c", "1", "--lease-ttl", "1")
    result = client.enqueue("example.sleep", {"ms": 3000})
    first_run = wait_run_running(db, result.id, 1)
    frozen_id = _instance_id(db, frozen)
    assert first_run.worker_id == frozen_id

    frozen.signal(signal.SIGSTOP)
    try:
        other = spawn(service_env, "other", "-c", "1", "--lease-ttl", "1")
        second_run = wait_run_running(db, result.id, 2)
        other_id = _instance_id(db, other)
        assert second_run.worker_id == other_id
    finally:
        frozen.signal(signal.SIGCONT)

    # the frozen worker's handler has long since finished: its outcome must be refused
    wait_for(
        lambda: "rejected: the lease was taken over (late completion)" in frozen.log(),
        15,
        message="the late completion rejected in the frozen worker's log",
    )
    wait_status(db, result.id, "completed", timeout=30)
    first, second = db.runs(result.id)
    assert (first.attempt, first.status, first.outcome_reason) == (1, "lost", "lease_expired")
    assert first.worker_id == frozen_id
    assert first.result is None
    assert (second.attempt, second.status) == (2, "succeeded")
    assert second.worker_id == other_id
    assert second.result == {"slept_ms": 3000, "attempt": 2}
    assert db.succeeded_runs_per_task() == {1: 1}
    wait_for(
        lambda: rds.zcard(k.inflight) == 0 and rds.hlen(k.leases) == 0,
        10,
        message="no lease left behind",
    )

    # the thawed worker is healthy and takes new work
    assert frozen.proc is not None
    assert frozen.proc.poll() is None
    more = [client.enqueue("example.sleep", {"ms": 300}).id for _ in range(4)]
    for task_id in more:
        wait_status(db, task_id, "completed", timeout=30)
    workers = {db.runs(task_id)[0].worker_id for task_id in more}
    assert frozen_id in workers or len(workers) == 1


@contextmanager
def _supervised(workers: list[WorkerProcess]) -> Iterator[list[int]]:
    """Restart any of ``workers`` that exits, like supervisord; yields the restart counts."""
    stop = threading.Event()
    restarts = [0] * len(workers)

    def loop() -> None:
        while not stop.wait(0.05):
            for i, worker in enumerate(workers):
                if worker.proc is not None and worker.proc.poll() is not None:
                    restarts[i] += 1
                    worker.start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield restarts
    finally:
        stop.set()
        thread.join(5)


def test_task_that_kills_its_worker_is_dead_lettered_as_lost_after_three_lost_runs(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    keys: Keyspace,
) -> None:
    # one slot each: a crash takes down the poison run and at most an outcome being written
    args = ("-c", "1", "--lease-ttl", "1")
    workers = [spawn(service_env, f"w{n}", *args) for n in range(2)]
    with _supervised(workers) as restarts:
        poison = client.enqueue("testkit.crash", {})
        others = [
            r.id
            for r in client.enqueue_many(
                [{"name": "example.sleep", "payload": {"ms": 100}} for _ in range(100)]
            )
        ]
        wait_status(db, poison.id, "failed", timeout=60)
        for task_id in others:
            wait_status(db, task_id, "completed", timeout=60)
    assert sum(restarts) == 3

    task = task_row(db, poison.id)
    assert task.failure_reason == "lost"
    assert task.lost_runs == 3
    assert task.retry_count == 0  # lost runs spend the poison budget, not the retries
    runs = db.runs(poison.id)
    assert [(r.attempt, r.status, r.outcome_reason) for r in runs] == [
        (n, "lost", "lease_expired") for n in (1, 2, 3)
    ]
    wait_for(
        lambda: redis_list(rds, keys.queue("default").dlq) == [str(poison.id)],
        10,
        message="the poison task in the dlq list",
    )

    # the other tasks kept completing while the poison task was killing workers, each once.
    # (An outcome still on its way to the store when the process died is lost with it: that
    # run ends lost and runs again, which is at-least-once delivery, never a second success.)
    assert db.succeeded_runs_per_task() == {1: 100, 0: 1}
    lost = db.rows("SELECT * FROM task_runs WHERE status = 'lost'")
    assert all(run.outcome_reason == "lease_expired" for run in lost)
    others_statuses = db.rows("SELECT DISTINCT status FROM task_runs")
    assert {row[0] for row in others_statuses} <= {"succeeded", "lost"}
    between = db.scalar(
        "SELECT count(*) FROM task_runs WHERE status = 'succeeded' "
        "AND started_at > :first AND finished_at < :last",
        first=runs[0].started_at,
        last=runs[2].started_at,
    )
    assert between > 0
