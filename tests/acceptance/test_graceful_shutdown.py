"""SIGTERM drains within the grace period and hands unfinished runs back without spending an
attempt; a second signal exits at once (issue 3, item 7 and "Done when": SIGTERM)."""

from __future__ import annotations

import signal
import time
import uuid

import pytest
import redis

from taskrt.client import Client
from taskrt.queue.keyspace import Keyspace
from tests.acceptance.conftest import WorkerFactory
from tests.acceptance.helpers import redis_list, task_status, wait_run_running, wait_status
from tests.support.db import Db
from tests.support.procs import WorkerProcess, wait_for

pytestmark = pytest.mark.services

GRACE = 1.0


def _worker_id(db: Db, name: str) -> uuid.UUID:
    return wait_for(
        lambda: db.scalar("SELECT id FROM workers WHERE name = :n", n=name),
        30,
        message=f"worker {name} registered",
    )


def _exit_after_signal(worker: WorkerProcess, timeout: float) -> tuple[int, float]:
    """Send SIGTERM; return the exit code and the seconds from the signal to the exit."""
    start = time.monotonic()
    worker.signal(signal.SIGTERM)
    code = worker.wait(timeout)
    return code, time.monotonic() - start


def test_sigterm_hands_back_unfinished_runs_without_spending_an_attempt(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    keys: Keyspace,
) -> None:
    k = keys.queue("default")
    first = spawn(service_env, "w1", "-c", "4", "--shutdown-grace", str(GRACE))
    tasks = [client.enqueue("example.sleep", {"ms": 10_000}).id for _ in range(4)]
    for task_id in tasks:
        wait_run_running(db, task_id, 1)
    first_id = _worker_id(db, "w1")
    run_ids = {task_id: db.runs(task_id)[0].id for task_id in tasks}

    code, elapsed = _exit_after_signal(first, timeout=GRACE + 10)
    assert code == 0, first.log()[-3000:]
    assert elapsed < GRACE + 1.0, f"exited {elapsed:.2f} s after SIGTERM"
    assert "handing back 4 unfinished run(s)" in first.log()

    # the same run rows are queued again, attempt 1, with nothing of the first worker on them
    for task_id in tasks:
        (run,) = db.runs(task_id)
        assert run.id == run_ids[task_id]
        assert (run.attempt, run.status) == (1, "queued")
        assert run.started_at is None
        assert run.worker_id is None
        assert run.lease_token is None
        assert run.finished_at is None
        assert task_status(db, task_id) == "queued"
    assert sorted(redis_list(rds, k.ready)) == sorted(str(r) for r in run_ids.values())
    assert rds.zcard(k.inflight) == 0
    assert rds.hlen(k.leases) == 0
    assert db.scalar("SELECT status FROM workers WHERE id = :w", w=first_id) == "offline"

    # another worker completes them: still one run each, attempt 1
    second = spawn(service_env, "w2", "-c", "4")
    for task_id in tasks:
        wait_status(db, task_id, "completed", timeout=30)
    second_id = _worker_id(db, "w2")
    for task_id in tasks:
        (run,) = db.runs(task_id)
        assert run.id == run_ids[task_id]
        assert (run.attempt, run.status) == (1, "succeeded")
        assert run.worker_id == second_id
        assert run.result == {"slept_ms": 10_000, "attempt": 1}
    assert db.scalar("SELECT sum(retry_count + lost_runs) FROM tasks") == 0
    assert second.stop() == 0


def test_second_sigterm_during_the_grace_period_exits_at_once(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
) -> None:
    first = spawn(service_env, "w1", "-c", "4", "--shutdown-grace", "30", "--lease-ttl", "1.5")
    tasks = [client.enqueue("example.sleep", {"ms": 4000}).id for _ in range(4)]
    for task_id in tasks:
        wait_run_running(db, task_id, 1)

    first.signal(signal.SIGTERM)
    wait_for(lambda: "stopping; draining" in first.log(), 10, message="draining started")
    code, elapsed = _exit_after_signal(first, timeout=10)
    assert code != 0
    assert elapsed < 1.0, f"exited {elapsed:.2f} s after the second signal"
    assert "second signal: exiting now" in first.log()

    # nothing was handed back: the leases run out and the reaper retries the runs elsewhere
    for task_id in tasks:
        (run,) = db.runs(task_id)
        assert run.status == "running"
    spawn(service_env, "w2", "-c", "4")
    for task_id in tasks:
        wait_status(db, task_id, "completed", timeout=30)
        lost, done = db.runs(task_id)
        assert (lost.attempt, lost.status, lost.outcome_reason) == (1, "lost", "lease_expired")
        assert (done.attempt, done.status) == (2, "succeeded")


def test_sigterm_fails_a_run_past_its_timeout_instead_of_handing_it_back(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
) -> None:
    """A run that overran its timeout (its coroutine swallowed the cancellation and the hard
    deadline is far off) spends its attempt at SIGTERM; the innocent run beside it is handed
    back. The next worker writes the retry off at its hard deadline instead of hanging on it
    (issue 12, item 13)."""
    patient = {**service_env, "TASKRT_TIMEOUT_GRACE": "120"}
    first = spawn(patient, "w1", "-c", "2", "--shutdown-grace", str(GRACE))
    swallow = client.enqueue(
        "testkit.async_swallow",
        {"seconds": 300},
        max_retries=1,
        retry="fixed",
        retry_params={"delay": 0.2},
    )
    sleeper = client.enqueue("example.sleep", {"ms": 6000})
    wait_run_running(db, swallow.id, 1)
    wait_run_running(db, sleeper.id, 1)
    time.sleep(0.8)  # past the timeout of 0.5 s, long before the hard deadline

    code, elapsed = _exit_after_signal(first, timeout=GRACE + 10)
    assert code == 0, first.log()[-3000:]
    assert elapsed < GRACE + 2.0, f"exited {elapsed:.2f} s after SIGTERM"
    assert "handing back 1 unfinished run(s)" in first.log()
    overran, retry = db.runs(swallow.id)
    assert (overran.attempt, overran.status, overran.outcome_reason) == (1, "failed", "timeout")
    assert (retry.attempt, retry.status) == (2, "queued")
    (handed,) = db.runs(sleeper.id)
    assert (handed.attempt, handed.status) == (1, "queued")

    second = spawn(service_env, "w2", "-c", "2")
    wait_status(db, swallow.id, "failed", timeout=30)
    wait_status(db, sleeper.id, "completed", timeout=30)
    _, retry = db.runs(swallow.id)
    assert (retry.status, retry.outcome_reason) == ("failed", "retries_exhausted")
    assert retry.error_type == "TimeoutError"
    assert [(r.attempt, r.status) for r in db.runs(sleeper.id)] == [(1, "succeeded")]
    assert second.stop() == 0
