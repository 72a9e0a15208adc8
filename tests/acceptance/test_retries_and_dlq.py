"""Retries follow their strategy; exhausted tasks land in the dead-letter queue; replays are
exactly-once even when they race (issue 3, "Done when": flaky, always failing, replay)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from taskrt.client import Client
from taskrt.exceptions import ValidationError
from taskrt.ids import uuid7
from taskrt.outcomes import OutcomeBuilder
from taskrt.queue.base import QueueBackend
from taskrt.queue.keyspace import Keyspace
from taskrt.records import FinishReport, RunFinish, WorkerIdentity
from taskrt.service import EnqueueSpec
from taskrt.settings import Settings
from taskrt.worker.execution import ActiveRun
from taskrt.worker.finisher import Finisher
from tests.acceptance.conftest import WorkerFactory
from tests.acceptance.helpers import redis_list, task_row, wait_status
from tests.api import conftest as api_fixtures
from tests.api.conftest import ApiFactory
from tests.conformance import conftest as conformance_fixtures
from tests.conformance.conftest import Stack
from tests.support import procs, services
from tests.support.db import Db
from tests.support.procs import REPO_ROOT, TASKRT, run_cli, wait_for

pytestmark = pytest.mark.services

# fixtures of other suites used here: the API app in this process, and one stack per backend
make_api = api_fixtures.make_api
stack = conformance_fixtures.stack

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
    # the command that found nothing left to replay says so with exit status 1
    assert sorted(p.returncode for p in procs) == [0, 1], outputs
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


# --- no input a producer can send stops a worker from finishing other tasks (issue 12, #1) ---


class _Written:
    """The finisher's ``on_written`` callback, keeping every report."""

    def __init__(self) -> None:
        self.reports: list[FinishReport] = []

    def __call__(self, actives: list[ActiveRun], report: FinishReport) -> None:
        self.reports.append(report)

    def won(self) -> list[RunFinish]:
        return [f for r in self.reports for f in r.won]


def _claim(stack: Stack, names: list[str]) -> tuple[WorkerIdentity, list[Any]]:
    specs = [EnqueueSpec(name=n, payload={"i": i}, queue="iso") for i, n in enumerate(names)]
    ids = [r.id for r in stack.service.enqueue_many(specs)]
    identity = WorkerIdentity(id=uuid7(), lease_ttl=30.0)
    runs = stack.backend.acquire(["iso"], len(ids), identity)
    assert [r.task_id for r in runs] == ids
    return identity, runs


def _finish_all(
    backend: QueueBackend, identity: WorkerIdentity, finishes: list[RunFinish]
) -> _Written:
    written = _Written()
    finisher = Finisher(backend, identity, written)
    finisher.start()
    for finish in finishes:
        finisher.submit(ActiveRun(run=finish.run), finish)
    try:
        assert finisher.wait_flushed(20.0), "the finisher is stuck on a batch"
    finally:
        finisher.stop()
    return written


def test_the_finisher_isolates_an_outcome_the_store_refuses(stack: Stack) -> None:
    identity, runs = _claim(stack, ["example.echo"] * 4)
    builder = OutcomeBuilder(stack.service.registry, traceback_limit=2000)
    absurd = builder.failed(runs[1], RuntimeError("boom"))
    absurd.retry_delay = 1e300  # past the clamp: a due time no database can store
    finishes = [builder.succeeded(runs[0], {"n": 0}), absurd]
    finishes += [builder.succeeded(run, {"n": n}) for n, run in enumerate(runs[2:], 2)]
    if stack.kind != "sqlite":  # PostgreSQL refuses NUL in JSON text; SQLite stores it
        finishes[2] = builder.succeeded(runs[2], "nul \x00 inside")

    written = _finish_all(stack.backend, identity, finishes)

    refused = [1] if stack.kind == "sqlite" else [1, 2]
    for n, run in enumerate(runs):
        task = stack.service.get(run.task_id)
        if n in refused:
            assert (task.status, task.failure_reason) == ("failed", "unwritable_outcome")
            (stored,) = task.runs
            assert (stored.status, stored.outcome_reason) == ("failed", "unwritable_outcome")
            assert "store refused" in (stored.error_message or "")
        else:
            assert task.status == "completed", (n, task.status)
    assert sorted(f.status for f in written.won()) == sorted(
        "failed" if n in refused else "succeeded" for n in range(4)
    )
    counts = stack.backend.counts(["iso"])[0]
    assert (counts.ready, counts.delayed, counts.inflight) == (0, 0, 0)


class _ReplyLost:
    """A backend whose first write commits and then loses its reply, as a connection dropped
    right after the commit does."""

    def __init__(self, backend: QueueBackend) -> None:
        self.backend = backend
        self.calls = 0

    def finish(self, finishes: Any, worker: WorkerIdentity) -> FinishReport:
        self.calls += 1
        report = self.backend.finish(finishes, worker)
        if self.calls == 1:
            raise ConnectionError("connection lost after the commit")
        return report


def test_an_outcome_committed_before_the_reply_was_lost_counts_as_written(stack: Stack) -> None:
    identity, runs = _claim(stack, ["example.echo"] * 3)
    builder = OutcomeBuilder(stack.service.registry, traceback_limit=2000)
    retried = builder.failed(runs[1], RuntimeError("again"))
    assert retried.retry_delay is not None
    retried.retry_delay = 0.0
    dead = builder.failed(runs[2], RuntimeError("never"))
    dead.retry_delay = dead.next_run_id = None
    finishes = [builder.succeeded(runs[0], "done"), retried, dead]

    flaky = _ReplyLost(stack.backend)
    written = _finish_all(cast(QueueBackend, flaky), identity, finishes)

    assert flaky.calls == 2
    (report,) = written.reports
    assert report.fenced == []  # nothing logged as a late completion
    assert {f.run.run_id for f in report.won} == {r.run_id for r in runs}
    assert {f.run.run_id for f in report.recovered} == {r.run_id for r in runs}
    assert [e.run_id for e in report.retries] == [retried.next_run_id]
    assert stack.service.get(runs[0].task_id).status == "completed"
    assert stack.service.get(runs[2].task_id).status == "failed"
    # the retry is in its queue at once, not only after a reconcile
    (again,) = stack.backend.acquire(["iso"], 1, identity)
    assert (again.task_id, again.attempt) == (runs[1].task_id, 2)


def _wait_task(client: Client, task_id: uuid.UUID, status: str) -> Any:
    def reached() -> Any:
        task = client.get(task_id)
        return task if task.status == status else None

    return wait_for(reached, 30, interval=0.05, message=f"task {task_id} {status}")


@pytest.mark.parametrize("dialect", ["postgresql", "sqlite"])
def test_no_retry_delay_or_result_stops_a_worker_from_finishing_other_tasks(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path, spawn: WorkerFactory
) -> None:
    if dialect == "sqlite":
        url = services.sqlite_database(str(tmp_path / "taskrt.db"))
        env = procs.service_env(url, maintenance_interval=0.2, heartbeat_interval=0.5)
    else:
        url = request.getfixturevalue("pg_url")
        env = request.getfixturevalue("service_env")
    env["TASKRT_MAX_RETRY_DELAY"] = "3600"
    env["TASKRT_LOG_LEVEL"] = "INFO"
    settings = Settings(
        database_url=url,
        redis_url=env.get("TASKRT_REDIS_URL"),
        redis_prefix=env.get("TASKRT_REDIS_PREFIX", ""),
        plugins_modules=["tests.support.testkit"],
    )
    with Client(settings) as client:
        absurd = {
            delay: client.enqueue(
                "testkit.absurd_retry", {}, retry="testkit.absurd", retry_params={"delay": delay}
            ).id
            for delay in ("nan", "inf", "1e308", "-inf")
        }
        nul = client.enqueue("testkit.nul_result", {}).id
        normal = [
            r.id
            for r in client.enqueue_many(
                [{"name": "example.sleep", "payload": {"ms": 20}} for _ in range(20)]
            )
        ]
        worker = spawn(env, "steady", "-c", "4")
        for task_id in normal:
            _wait_task(client, task_id, "completed")
        for delay in ("nan", "inf", "1e308"):  # capped at TASKRT_MAX_RETRY_DELAY
            task = _wait_task(client, absurd[delay], "retrying")
            first, second = task.runs
            assert (first.status, second.status) == ("failed", "queued")
            wait = second.available_at - first.finished_at
            assert timedelta(seconds=3590) < wait < timedelta(seconds=3610), (delay, wait)
        task = _wait_task(client, absurd["-inf"], "failed")  # 0 s: retried, then exhausted
        assert task.failure_reason == "retries_exhausted"
        if dialect == "postgresql":
            task = _wait_task(client, nul, "failed")
            assert task.failure_reason == "unwritable_outcome"
        else:
            _wait_task(client, nul, "completed")
        # and the worker goes on finishing new work
        more = [client.enqueue("example.sleep", {"ms": 10}).id for _ in range(5)]
        for task_id in more:
            _wait_task(client, task_id, "completed")
        assert worker.proc is not None
        assert worker.proc.poll() is None
        # one line a minute per strategy (rate-limited): whichever absurd delay came first
        assert "retry delay from strategy 'testkit.absurd' is " in worker.log()


# --- retry parameters that would make an unstorable due time are refused everywhere ----------

EXTREME_PARAMS = [
    ("exponential", {"base": 1e308}, "base"),
    ("exponential", {"max_delay": 1e300}, "max_delay"),
    ("exponential", {"factor": 1e9}, "factor"),
    ("exponential", {"base": float("nan")}, "base"),
    ("fixed", {"delay": 1e20}, "delay"),
    ("linear", {"step": float("inf")}, "step"),
]


@pytest.mark.parametrize(("strategy", "params", "field"), EXTREME_PARAMS)
def test_extreme_retry_params_are_refused_on_every_path(
    strategy: str, params: dict[str, Any], field: str, client: Client, make_api: ApiFactory
) -> None:
    with pytest.raises(ValidationError) as refused:
        client.enqueue("example.echo", {}, retry=strategy, retry_params=params)
    assert field in str(refused.value)

    api = make_api()
    admin = api.auth("admin")
    body = json.dumps(
        {"name": "example.echo", "payload": {}, "retry": strategy, "retry_params": params}
    )
    headers = {**admin, "Content-Type": "application/json"}
    answer = api.client.post("/api/v1/tasks", content=body, headers=headers)
    assert answer.status_code == 422, answer.text
    assert field in answer.text

    schedule = {"cron": "0 * * * *", "task": "example.echo", "payload": {}}
    answer = api.client.post(
        "/api/v1/schedules",
        content=json.dumps({**schedule, "retry": strategy, "retry_params": params}),
        headers=headers,
    )
    assert answer.status_code == 422, answer.text
    assert field in answer.text
    created = api.client.post("/api/v1/schedules", json=schedule, headers=admin)
    assert created.status_code == 201, created.text
    schedule_id = created.json()["id"]
    answer = api.client.patch(
        f"/api/v1/schedules/{schedule_id}",
        content=json.dumps({"retry": strategy, "retry_params": params}),
        headers=headers,
    )
    assert answer.status_code == 422, answer.text
    assert field in answer.text
    assert (
        api.client.get(f"/api/v1/schedules/{schedule_id}", headers=admin).json()["retry_params"]
        == {}
    )
    assert api.client.get("/api/v1/tasks", headers=admin).json()["items"] == []


def test_the_cli_refuses_extreme_retry_params(service_env: dict[str, str]) -> None:
    proc = run_cli(
        ["enqueue", "example.echo", "--retry", "exponential", "--retry-params", '{"base": 1e308}'],
        service_env,
        check=False,
    )
    assert proc.returncode != 0
    assert "base" in proc.stderr
    assert "315360000" in proc.stderr  # says the limit


def test_a_suspect_handed_back_after_starting_alone_is_charged_only_if_it_starts_alone_again(
    stack: Stack,
) -> None:
    (task_id,) = [r.id for r in stack.service.enqueue_many([EnqueueSpec(name="example.echo")])]
    first = WorkerIdentity(id=uuid7(), lease_ttl=0.2)
    assert len(stack.backend.acquire(["default"], 1, first)) == 1
    time.sleep(0.3)
    stack.backend.maintain()  # lost beside (possibly) others: not charged, next run suspect
    alone = WorkerIdentity(id=uuid7(), lease_ttl=30.0)
    (suspect,) = stack.backend.acquire(["default"], 1, alone)
    assert suspect.suspect
    assert stack.store.mark_isolated(suspect)
    assert stack.backend.hand_back([suspect], alone) == 1  # a shutdown: not run after all
    busy = WorkerIdentity(id=uuid7(), lease_ttl=0.2)
    (again,) = stack.backend.acquire(["default"], 1, busy)  # parked, never started alone
    assert again.run_id == suspect.run_id
    time.sleep(0.3)
    stack.backend.maintain()
    task = stack.service.get(task_id)
    assert task.lost_runs == 0
    assert [r.status for r in task.runs] == ["lost", "lost", "queued"]
