"""End-to-end lifecycle on Redis + PostgreSQL with real worker processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskrt.client import Client
from tests.support.db import Db
from tests.support.procs import WorkerProcess, run_cli, wait_for

pytestmark = pytest.mark.services


def test_two_workers_complete_2000_tasks_over_two_queues_exactly_once(
    client: Client, db: Db, service_env: dict[str, str], tmp_path: Path
) -> None:
    specs = [
        {"name": "example.echo", "payload": {"i": i}, "queue": "high" if i % 2 else "normal"}
        for i in range(2000)
    ]
    for start in range(0, len(specs), 500):
        client.enqueue_many(specs[start : start + 500])
    workers = [
        WorkerProcess(
            service_env, tmp_path / f"w{n}.log", "--queues", "high,normal", "-c", "8"
        ).start()
        for n in range(2)
    ]
    try:
        wait_for(
            lambda: db.task_statuses().get("completed", 0) == 2000,
            timeout=120,
            message="2000 completed tasks",
        )
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0], [w.log()[-2000:] for w in workers]
    assert db.task_statuses() == {"completed": 2000}
    assert db.succeeded_runs_per_task() == {1: 2000}
    assert db.scalar("SELECT count(*) FROM task_runs") == 2000
    # both workers did a share of the work
    per_worker = db.rows("SELECT worker_id, count(*) FROM task_runs GROUP BY worker_id")
    assert len(per_worker) == 2


def test_strict_priority_starts_every_high_task_before_any_normal_task(
    client: Client, db: Db, service_env: dict[str, str], tmp_path: Path
) -> None:
    client.enqueue_many(
        [{"name": "example.echo", "payload": i, "queue": "normal"} for i in range(50)]
    )
    client.enqueue_many(
        [{"name": "example.echo", "payload": i, "queue": "high"} for i in range(50)]
    )
    worker = WorkerProcess(
        service_env, tmp_path / "w.log", "--queues", "high,normal", "-c", "1"
    ).start()
    try:
        wait_for(lambda: db.task_statuses().get("completed", 0) == 100, timeout=60)
    finally:
        worker.stop()
    last_high = db.scalar("SELECT max(r.started_at) FROM task_runs r WHERE r.queue_name = 'high'")
    first_normal = db.scalar(
        "SELECT min(r.started_at) FROM task_runs r WHERE r.queue_name = 'normal'"
    )
    assert last_high < first_normal


def test_cli_enqueue_show_and_queues(service_env: dict[str, str], db: Db, tmp_path: Path) -> None:
    task_id = run_cli(
        ["enqueue", "example.word_count", "--payload", '{"text": "a b a"}', "--queue", "high"],
        service_env,
    ).stdout.strip()
    queues = run_cli(["queues", "--json"], service_env).stdout
    assert '"ready": 1' in queues
    worker = WorkerProcess(service_env, tmp_path / "w.log", "--queues", "high").start()
    try:
        wait_for(lambda: db.task_statuses().get("completed") == 1, timeout=30)
    finally:
        worker.stop()
    shown = run_cli(["task", "show", task_id, "--json"], service_env).stdout
    assert '"words": 3' in shown
    assert '"status": "succeeded"' in shown
