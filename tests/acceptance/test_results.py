"""A task's result without digging: ``TaskRecord.result`` in Python, ``task show --result`` on
the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from taskrt.client import Client
from tests.support.db import Db
from tests.support.procs import WorkerProcess, run_cli, wait_for

pytestmark = pytest.mark.services


def test_a_completed_task_shows_its_result_in_python_and_on_the_command_line(
    client: Client, db: Db, service_env: dict[str, str], tmp_path: Path
) -> None:
    payload = {"greeting": "hello", "n": [1, 2, 3]}
    done = client.enqueue("example.echo", payload).id
    failing = client.enqueue("testkit.nonretryable", {}).id
    waiting = client.enqueue("example.echo", {"later": True}, queue="nobody_serves_this").id

    def status(task_id: object) -> str:
        return str(db.scalar("SELECT status FROM tasks WHERE id = :id", id=str(task_id)))

    assert client.get(waiting).result is None

    worker = WorkerProcess(service_env, tmp_path / "w.log").start()
    try:
        wait_for(
            lambda: {status(done), status(failing)} == {"completed", "failed"},
            timeout=60,
            message="the echo task completed and the failing one failed",
        )
    finally:
        worker.stop()

    task = client.get(done)
    assert task.result == payload
    assert task.latest_run is not None
    assert task.latest_run.result == payload
    assert client.get(failing).result is None

    shown = run_cli(["task", "show", str(done), "--result"], service_env)
    assert json.loads(shown.stdout) == payload
    for task_id, status in ((failing, "failed"), (waiting, "queued")):
        refused = run_cli(["task", "show", str(task_id), "--result"], service_env, check=False)
        assert refused.returncode == 1
        assert f"has no result: it is {status}" in refused.stderr
        assert refused.stdout == ""
