"""Running finished tasks again from the command line: ``taskrt task retry ID`` for any
finished task, ``taskrt dlq replay ID`` without naming the queue."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskrt.client import Client
from tests.support.db import Db
from tests.support.procs import WorkerProcess, run_cli, wait_for

pytestmark = pytest.mark.services


def test_task_retry_runs_a_completed_task_again_and_dlq_replay_needs_no_queue(
    client: Client, db: Db, service_env: dict[str, str], tmp_path: Path
) -> None:
    done = client.enqueue("example.echo", {"n": 1}).id
    dead = client.enqueue("testkit.nonretryable", {}, queue="other").id

    def status(task_id: object) -> str:
        return str(db.scalar("SELECT status FROM tasks WHERE id = :id", id=str(task_id)))

    worker = WorkerProcess(service_env, tmp_path / "w.log", "--queues", "default,other").start()
    try:
        wait_for(
            lambda: (status(done), status(dead)) == ("completed", "failed"),
            timeout=60,
            message="one task completed, one dead-lettered",
        )
        # a running worker takes the re-run task: a second run, succeeded
        out = run_cli(["task", "retry", str(done)], service_env).stdout
        assert f"task {done} queued again in default (attempt 2)" in out
        wait_for(
            lambda: [r.status for r in db.runs(done)] == ["succeeded", "succeeded"],
            timeout=30,
            message="the completed task ran a second time",
        )
        assert status(done) == "completed"

        # replay by id alone: the task's own queue is used
        replayed = run_cli(["dlq", "replay", str(dead), "--json"], service_env)
        assert json.loads(replayed.stdout)["replayed"] == [str(dead)]
        wait_for(lambda: len(db.runs(dead)) == 2, timeout=30, message="a second run")
        wait_for(lambda: status(dead) == "failed", timeout=30, message="dead-lettered again")
    finally:
        worker.stop()

    # naming the wrong queue, or a task that is not dead-lettered, replays nothing: exit 1
    wrong_queue = run_cli(["dlq", "replay", "default", str(dead)], service_env, check=False)
    assert wrong_queue.returncode == 1
    assert "skipped 1 (not dead-lettered in default)" in wrong_queue.stderr
    not_dead = run_cli(["dlq", "replay", str(done)], service_env, check=False)
    assert not_dead.returncode == 1
    assert "replayed 0 task(s)" in not_dead.stdout

    # a task that has not finished cannot be re-run
    waiting = client.enqueue("example.echo", {}, queue="nobody_serves_this").id
    refused = run_cli(["task", "retry", str(waiting)], service_env, check=False)
    assert refused.returncode == 1
    assert "is queued: only a finished task" in refused.stderr
    audit = db.rows("SELECT action, actor FROM audit_log WHERE action = 'task.retry'")
    assert [(a.action, a.actor.startswith("cli:")) for a in audit] == [("task.retry", True)]
