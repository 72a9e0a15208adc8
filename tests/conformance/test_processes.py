"""Real worker processes on every backend: crash recovery, graceful shutdown, shared SQLite."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from taskrt.service import EnqueueSpec
from tests.conformance.conftest import Stack
from tests.support.procs import REPO_ROOT, WorkerProcess, wait_for

pytestmark = pytest.mark.services


def statuses(stack: Stack) -> Counter[str]:
    with stack.store.engine.connect() as conn:
        return Counter(
            {
                row[0]: row[1]
                for row in conn.execute(
                    sa.text("SELECT status, count(*) FROM tasks GROUP BY status")
                )
            }
        )


def rows(stack: Stack, sql: str) -> list[sa.Row[object]]:
    with stack.store.engine.connect() as conn:
        return list(conn.execute(sa.text(sql)))


def _running_on(stack: Stack, pid: int) -> int:
    """How many runs the worker process ``pid`` holds in the store as running."""
    found = rows(
        stack,
        "SELECT count(*) FROM task_runs r JOIN workers w ON w.id = r.worker_id "
        f"WHERE r.status = 'running' AND w.pid = {int(pid)}",
    )
    return int(found[0][0])


def test_sigkill_recovery(stack: Stack, tmp_path: Path) -> None:
    rng = random.Random(11)
    stack.service.enqueue_many(
        [
            EnqueueSpec(name="example.sleep", payload={"ms": rng.randint(50, 200)})
            for _ in range(200)
        ]
    )
    env = dict(stack.env, TASKRT_LEASE_TTL="1.5")
    victim = WorkerProcess(env, tmp_path / "victim.log", "-c", "4").start()
    steady = WorkerProcess(env, tmp_path / "steady.log", "-c", "4").start()
    try:
        for _ in range(2):
            # the victim itself must hold runs when it dies (under load it may start slowly)
            wait_for(
                lambda: _running_on(stack, victim.pid) > 0, timeout=30, message="victim running"
            )
            time.sleep(0.2)
            victim.signal(signal.SIGKILL)
            victim.wait(10)
            victim.start()
        wait_for(lambda: statuses(stack)["completed"] == 200, timeout=120, message="all completed")
    finally:
        victim.stop()
        steady.stop()
    assert statuses(stack) == {"completed": 200}
    # no task has two succeeded runs; every run that is not succeeded was lost with its worker
    per_task = rows(
        stack,
        "SELECT task_id, sum(CASE WHEN status = 'succeeded' THEN 1 ELSE 0 END) "
        "FROM task_runs GROUP BY task_id",
    )
    assert {row[1] for row in per_task} == {1}
    others = rows(stack, "SELECT status, outcome_reason FROM task_runs WHERE status != 'succeeded'")
    assert others, "the kills should have cost some runs"
    assert {tuple(r) for r in others} == {("lost", "lease_expired")}


def test_sigterm_drains_and_hands_back_without_spending_attempts(
    stack: Stack, tmp_path: Path
) -> None:
    ids = [
        r.id
        for r in stack.service.enqueue_many(
            [EnqueueSpec(name="example.sleep", payload={"ms": 20_000}) for _ in range(2)]
        )
    ]
    quick = stack.service.enqueue(EnqueueSpec(name="example.sleep", payload={"ms": 300})).id
    worker = WorkerProcess(
        stack.env, tmp_path / "w.log", "-c", "3", "--shutdown-grace", "1"
    ).start()
    wait_for(lambda: statuses(stack)["running"] == 3, timeout=30, message="three running")
    signalled = time.monotonic()
    worker.signal(signal.SIGTERM)
    assert worker.wait(10) == 0
    assert (
        time.monotonic() - signalled < 2.0 + 1.0
    )  # grace + 1 s (+1 s slack for the interpreter exit)
    quick_task = stack.service.get(quick)
    assert quick_task.status == "completed"  # finished within the grace
    for task_id in ids:
        task = stack.service.get(task_id)
        assert task.status == "queued"
        assert [(r.attempt, r.status) for r in task.runs] == [(1, "queued")]
    assert statuses(stack)["running"] == 0


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_two_workers_and_a_producer_share_one_sqlite_file(stack: Stack, tmp_path: Path) -> None:
    producer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from taskrt.client import Client\n"
            "c = Client()\n"
            "for i in range(1000):\n"
            "    c.enqueue('example.echo', {'i': i})\n",
        ],
        env=stack.env,
        cwd=REPO_ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    workers = [
        WorkerProcess(stack.env, tmp_path / f"w{n}.log", "-c", "4").start() for n in range(2)
    ]
    try:
        _, producer_errors = producer.communicate(timeout=180)
        assert producer.returncode == 0, producer_errors
        wait_for(
            lambda: statuses(stack)["completed"] == 1000, timeout=180, message="1000 completed"
        )
    finally:
        for w in workers:
            w.stop()
    succeeded = rows(
        stack,
        "SELECT task_id, count(*) FROM task_runs WHERE status = 'succeeded' GROUP BY task_id",
    )
    assert len(succeeded) == 1000
    assert {row[1] for row in succeeded} == {1}
    logs = producer_errors + "".join(w.log() for w in workers)
    assert "database is locked" not in logs
    assert "Traceback" not in logs
