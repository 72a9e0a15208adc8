"""Workers that die or freeze lose nothing and complete nothing twice: SIGKILL, SIGSTOP fencing
and poison tasks (issue 3, "Done when": SIGKILL, fencing, os._exit)."""

from __future__ import annotations

import logging
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

from taskrt.backends import open_store
from taskrt.client import Client
from taskrt.ids import uuid7
from taskrt.queue.keyspace import Keyspace
from taskrt.queue.redis_backend import RedisQueueBackend
from taskrt.records import WorkerIdentity
from taskrt.runtime import Runtime
from taskrt.service import EnqueueSpec, TaskService
from taskrt.settings import Settings, load_settings
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
    # only a run lost while executing alone spends its task's poison budget; the runs held
    # together when a worker was killed are not charged, and their next runs are suspect
    alone = [run for run in lost if run.isolated_at is not None]
    assert db.scalar("SELECT sum(lost_runs) FROM tasks") == len(alone)
    for run in lost:
        (following,) = [r for r in db.runs(run.task_id) if r.attempt == run.attempt + 1]
        assert following.suspect


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
    # one slot each: a crash takes down the poison run and at most a prefetched run or an
    # outcome being written
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
    # the first death charges nothing (the worker may have held another run: nobody can be
    # blamed for sure); the poison then runs alone, and each of its three deaths alone is
    # charged to the poison budget
    assert sum(restarts) == 4

    task = task_row(db, poison.id)
    assert task.failure_reason == "lost"
    assert task.lost_runs == 3  # runs lost while executing alone
    assert task.retry_count == 0  # lost runs spend the poison budget, not the retries
    runs = db.runs(poison.id)
    assert [(r.attempt, r.status, r.outcome_reason) for r in runs] == [
        (n, "lost", "lease_expired") for n in (1, 2, 3, 4)
    ]
    assert [(r.suspect, r.isolated_at is not None) for r in runs] == [
        (False, False),
        (True, True),
        (True, True),
        (True, True),
    ]
    wait_for(
        lambda: redis_list(rds, keys.queue("default").dlq) == [str(poison.id)],
        10,
        message="the poison task in the dlq list",
    )

    # the other tasks kept completing while the poison task was killing workers, each once.
    # (An outcome still on its way to the store when the process died is lost with it: that
    # run ends lost and runs again, alone, which is at-least-once delivery, never a second
    # success; it is not charged to the poison budget.)
    assert db.succeeded_runs_per_task() == {1: 100, 0: 1}
    assert db.scalar("SELECT sum(lost_runs) FROM tasks WHERE id <> :p", p=poison.id) == 0
    lost = db.rows("SELECT * FROM task_runs WHERE status = 'lost'")
    assert all(run.outcome_reason == "lease_expired" for run in lost)
    others_statuses = db.rows("SELECT DISTINCT status FROM task_runs")
    assert {row[0] for row in others_statuses} <= {"succeeded", "lost"}
    between = db.scalar(
        "SELECT count(*) FROM task_runs WHERE status = 'succeeded' "
        "AND started_at > :first AND finished_at < :last",
        first=runs[0].started_at,
        last=runs[3].started_at,
    )
    assert between > 0


@pytest.mark.parametrize("backend", ["redis", "sql"])
def test_a_task_that_kills_its_worker_takes_no_innocent_task_to_the_dlq(
    backend: str,
    request: pytest.FixtureRequest,
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    keys: Keyspace,
) -> None:
    if backend == "sql":  # the SQL queue backend on the same PostgreSQL database
        service_env = {
            k: v
            for k, v in service_env.items()
            if k not in ("TASKRT_REDIS_URL", "TASKRT_REDIS_PREFIX")
        }
        client = Client(
            Settings(
                database_url=service_env["TASKRT_DATABASE_URL"],
                plugins_modules=["tests.support.testkit"],
            )
        )
        request.addfinalizer(client.close)
    # several slots: when the poison kills a worker, it takes every run that worker held.
    # Everything is queued before the workers start, the poison fourth, so the first fetch
    # takes it together with three innocents (however busy the machine is).
    sleep = {"name": "example.sleep", "payload": {"ms": 1500}}
    results = client.enqueue_many([sleep] * 3 + [{"name": "testkit.crash", "payload": {}}])
    results += client.enqueue_many([sleep] * 9)
    poison = results[3]
    innocents = [r.id for r in results if r.id != poison.id]
    args = ("-c", "4", "--lease-ttl", "1")
    workers = [spawn(service_env, f"w{n}", *args) for n in range(2)]
    with _supervised(workers) as restarts:
        wait_status(db, poison.id, "failed", timeout=90)
        for task_id in innocents:
            wait_status(db, task_id, "completed", timeout=60)
    assert sum(restarts) >= 4

    task = task_row(db, poison.id)
    assert (task.failure_reason, task.lost_runs) == ("lost", 3)
    charged = [r for r in db.runs(poison.id) if r.isolated_at is not None]
    assert [r.status for r in charged] == ["lost"] * 3
    # every innocent completed, none was charged, and the ones lost beside the poison ran
    # again alone
    for task_id in innocents:
        row = task_row(db, task_id)
        assert (row.status, row.lost_runs) == ("completed", 0)
        runs = db.runs(task_id)
        assert runs[-1].status == "succeeded"
        assert all(r.isolated_at is None or r.status == "succeeded" for r in runs)
        assert all(r.suspect for r in runs[1:])
    innocents_lost = db.scalar(
        "SELECT count(*) FROM task_runs WHERE status = 'lost' AND task_id <> :p", p=poison.id
    )
    assert innocents_lost > 0, "the poison took no innocent run down: the test proves nothing"
    if backend == "redis":
        assert redis_list(rds, keys.queue("default").dlq) == [str(poison.id)]
    assert db.succeeded_runs_per_task() == {1: 12, 0: 1}


# --- maintenance reports and queue garbage: lines that blame the right thing (issue 12, #17) --


@contextmanager
def _redis_backends(
    pg_url: str, redis_url: str, redis_prefix: str, count: int
) -> Iterator[list[RedisQueueBackend]]:
    settings = load_settings(
        database_url=pg_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        plugins_modules=["tests.support.testkit"],
        outbox_grace=0.0,
    )
    store = open_store(settings)
    backends = [RedisQueueBackend.from_settings(store, settings) for _ in range(count)]
    try:
        yield backends
    finally:
        for backend in backends:
            backend.close()
        store.dispose()


def test_only_the_maintenance_pass_that_requeued_a_run_counts_it(
    pg_url: str, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _redis_backends(pg_url, redis_url, redis_prefix, 2) as (first, second):
        service = TaskService(Runtime.load(first.settings), first.store, first)
        service.enqueue(EnqueueSpec(name="example.echo", payload={}, queue="q"))
        # leased in Redis by a worker that died before its claim: the run is still queued
        leased = first.lease(["q"], 1, WorkerIdentity(id=uuid7(), lease_ttl=0.05))
        assert len(leased) == 1
        time.sleep(0.2)
        k = first.keys.queue("q")
        # both workers' passes read the same expired entries before either moves them
        seen = first.scripts.expired(keys=[k.inflight, k.leases], args=[500])
        assert len(seen) == 2
        reports = [first.maintain()]
        monkeypatch.setattr(second.scripts, "expired", lambda **_kw: seen)
        reports.append(second.maintain())
        assert [r.requeued_unstarted for r in reports] == [1, 0]
        assert first.counts(["q"])[0].ready == 1


def test_garbage_in_a_queue_is_logged_at_most_once_a_minute(
    pg_url: str, redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    with _redis_backends(pg_url, redis_url, redis_prefix, 1) as (backend,):
        service = TaskService(Runtime.load(backend.settings), backend.store, backend)
        (task,) = service.enqueue_many([EnqueueSpec(name="example.echo", payload={}, queue="g")])
        k = backend.keys.queue("g")
        backend.redis.rpush(k.ready, *[f"garbage-{n}" for n in range(50)])
        identity = WorkerIdentity(id=uuid7(), lease_ttl=30.0)
        claimed = []
        with caplog.at_level(logging.WARNING, logger="taskrt.queue.redis"):
            for _ in range(51):
                claimed += backend.claim(backend.lease(["g"], 1, identity), identity)
        assert [run.task_id for run in claimed] == [task.id]
        lines = [r.getMessage() for r in caplog.records if "not a run id" in r.getMessage()]
        assert len(lines) == 1, lines
        assert backend.counts(["g"])[0].ready == 0
