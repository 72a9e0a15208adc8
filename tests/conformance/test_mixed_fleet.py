"""A fleet halfway through a rolling deploy, on every backend: a worker that does not have a task
type hands its runs back untouched, so no attempt is ever spent on a type a worker lacks
(issue 12, item 9)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from taskrt.service import EnqueueSpec
from tests.conformance.conftest import Stack
from tests.support.procs import WorkerProcess, wait_for

pytestmark = pytest.mark.services

FOREIGN = "testkit.chatty"  # defined in tests.support.testkit only


def _envs(stack: Stack) -> tuple[dict[str, str], dict[str, str]]:
    """(a worker that has the testkit types, one that lacks them: the same settings without
    the module that registers them)."""
    having = dict(stack.env, TASKRT_UNKNOWN_TASK_DELAY="0.2", TASKRT_LOG_LEVEL="INFO")
    lacking = {k: v for k, v in having.items() if k != "TASKRT_PLUGINS_MODULES"}
    return having, lacking


def _runs(stack: Stack, task_id: uuid.UUID) -> list[tuple[int, str]]:
    return [(r.attempt, r.status) for r in stack.service.get(task_id).runs]


def _scalar(stack: Stack, sql: str) -> object:
    with stack.store.engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def test_a_worker_without_the_task_type_leaves_it_queued_untouched(
    stack: Stack, tmp_path: Path
) -> None:
    having, lacking = _envs(stack)
    foreign = stack.service.enqueue(EnqueueSpec(name=FOREIGN, payload={})).id
    mine = stack.service.enqueue(EnqueueSpec(name="example.echo", payload={"n": 1})).id
    alone = WorkerProcess(lacking, tmp_path / "lacking.log", "-c", "2").start()
    try:
        wait_for(lambda: stack.service.get(mine).status == "completed", 30, message="echo ran")
        wait_for(
            lambda: f"of task type '{FOREIGN}'" in alone.log(), 30, message="a hand-back logged"
        )
        time.sleep(1.0)  # several more rounds of fetch and hand back (0.2 s apart)
        # between a claim and its hand-back the run is briefly `running`: wait for a rest
        wait_for(
            lambda: _runs(stack, foreign) == [(1, "queued")],
            10,
            message="the foreign run queued, first attempt",
        )
        assert stack.service.get(foreign).status in ("queued", "running")
        assert (
            _scalar(
                stack, "SELECT retry_count + lost_runs FROM tasks WHERE name = 'testkit.chatty'"
            )
            == 0
        )
        assert _scalar(stack, "SELECT count(*) FROM task_runs WHERE status = 'failed'") == 0

        # a worker that has the type takes it: still the first attempt
        full = WorkerProcess(having, tmp_path / "having.log", "-c", "2").start()
        try:
            wait_for(
                lambda: stack.service.get(foreign).status == "completed",
                30,
                message="the foreign task completed",
            )
        finally:
            assert full.stop() == 0
    finally:
        assert alone.stop() == 0
    assert _runs(stack, foreign) == [(1, "succeeded")]
    log = alone.log()
    assert "not installed on this worker" in log
    assert log.count(f"of task type '{FOREIGN}'") == 1  # rate-limited: once a minute


def test_two_workers_on_one_queue_spend_no_attempt_on_a_type_one_lacks(
    stack: Stack, tmp_path: Path
) -> None:
    having, lacking = _envs(stack)
    workers = [
        WorkerProcess(lacking, tmp_path / "lacking.log", "-c", "4").start(),
        WorkerProcess(having, tmp_path / "having.log", "-c", "4").start(),
    ]
    try:
        wait_for(lambda: all("started" in w.log() for w in workers), 30, message="both workers up")
        ids = [
            r.id
            for r in stack.service.enqueue_many(
                [EnqueueSpec(name=FOREIGN, payload={"i": i}) for i in range(20)]
            )
        ]
        wait_for(
            lambda: all(stack.service.get(t).status == "completed" for t in ids),
            60,
            message="every task completed",
        )
    finally:
        for w in workers:
            assert w.stop() == 0
    for task_id in ids:
        assert _runs(stack, task_id) == [(1, "succeeded")]
    assert _scalar(stack, "SELECT count(*) FROM task_runs WHERE status != 'succeeded'") == 0
    assert _scalar(stack, "SELECT sum(retry_count + lost_runs) FROM tasks") == 0


@pytest.mark.parametrize("stack", ["sqlite"], indirect=True)
def test_a_worker_says_which_task_types_default_to_queues_it_does_not_serve(
    stack: Stack, tmp_path: Path
) -> None:
    having, _ = _envs(stack)
    worker = WorkerProcess(having, tmp_path / "w.log", "-q", "spare").start()
    try:
        wait_for(lambda: "started" in worker.log(), 30, message="the worker started")
        wait_for(lambda: "does not serve" in worker.log(), 5, message="the unserved line")
    finally:
        assert worker.stop() == 0
    (line,) = [ln for ln in worker.log().splitlines() if "does not serve" in ln]
    assert "it serves spare" in line
    assert "default: " in line
    assert FOREIGN in line
    assert "example.echo" in line
