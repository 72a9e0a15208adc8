"""A handler result no read could return (nested deeper than TASKRT_MAX_JSON_DEPTH, or holding
lone surrogates) fails its run with reason ``unstorable_result`` instead of being stored, so
every read of the task keeps working, on every path (issue 12, defect 2)."""

from __future__ import annotations

import json

import pytest

from taskrt.client import Client
from tests.acceptance.conftest import WorkerFactory
from tests.acceptance.helpers import wait_status
from tests.support.db import Db
from tests.support.procs import run_cli

pytestmark = pytest.mark.services


def test_an_unstorable_result_fails_its_run_and_every_read_still_works(
    client: Client, db: Db, service_env: dict[str, str], spawn: WorkerFactory
) -> None:
    deep = client.enqueue("testkit.deep_result", {"depth": 300}).id
    surrogate = client.enqueue("testkit.deep_result", {"surrogate": True}).id
    fine = client.enqueue("testkit.deep_result", {"depth": 64}).id
    spawn(service_env, "w1", "-c", "2")
    wait_status(db, fine, "completed")
    for task_id in (deep, surrogate):
        wait_status(db, task_id, "failed")  # at once: the same handler would return the same
        task = client.get(task_id)
        assert task.failure_reason == "unstorable_result"
        (run,) = task.runs
        assert "the handler's result cannot be stored" in (run.error_message or "")
        shown = run_cli(["task", "show", str(task_id), "--json"], service_env)
        assert json.loads(shown.stdout)["status"] == "failed"
