"""``taskrt prune`` and automatic pruning, driven through the real CLI and worker processes
(issue 15, "Done when"): a dry run deletes nothing, the archive holds exactly what went, a
SIGKILLed prune leaves no task without its runs and no run without its task, and a worker's
maintenance pass prunes by the retention settings while live tasks and templates survive."""

from __future__ import annotations

import gzip
import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from taskrt.db.engine import create_engine
from tests.acceptance.conftest import WorkerFactory
from tests.support import history
from tests.support.procs import REPO_ROOT, TASKRT, run_cli, wait_for
from tests.support.procs import service_env as service_env_for

pytestmark = pytest.mark.services

DAY = 86400.0


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    handle = create_engine(pg_url)
    yield handle
    handle.dispose()


def test_dry_run_deletes_nothing_and_archive_holds_what_went(
    engine: Engine, service_env: dict[str, str], tmp_path: Path
) -> None:
    old = {str(i) for i in history.seed_tasks(engine, 40, "completed", age=9 * DAY, runs=2)}
    young = {str(i) for i in history.seed_tasks(engine, 5, "completed", age=DAY)}
    live = {str(i) for i in history.seed_tasks(engine, 3, "running")}
    history.seed_audit(engine, 4, age=400 * DAY)
    env = {**service_env, "TASKRT_RETENTION_BATCH_SIZE": "7"}
    before = history.counts(engine)

    dry = run_cli(["prune", "--older-than", "7d", "--dry-run", "--json"], env)
    assert json.loads(dry.stdout) == {
        "dry_run": True,
        "deleted": {"tasks": 40, "runs": 80, "audit": 4, "schedule_fires": 0},
        "more": False,
    }
    assert history.counts(engine) == before

    archive = tmp_path / "pruned.jsonl.gz"
    sliced = run_cli(
        ["prune", "--older-than", "7d", "--limit", "10", "--archive", str(archive)], env
    )
    assert "run it again" in sliced.stdout
    assert history.counts(engine)["tasks"] == 48 - 10
    done = run_cli(["prune", "--older-than", "7d", "--archive", str(archive)], env)
    assert "tasks" in done.stdout
    assert "30" in done.stdout
    assert "run it again" not in done.stdout
    with gzip.open(archive, "rt") as handle:
        lines = [json.loads(line) for line in handle]
    assert {line["id"] for line in lines} == old
    assert all(len(line["runs"]) == 2 for line in lines)
    left = history.ids(engine)
    assert not old & left
    assert young | live <= left
    assert history.counts(engine)["audit_log"] == 2  # the two prunes' own audit rows
    shown = run_cli(["prune", "--dry-run", "--json"], env)  # the settings keep the rest
    assert json.loads(shown.stdout)["deleted"]["tasks"] == 0


def test_bad_options_are_one_line_errors(service_env: dict[str, str]) -> None:
    for args, needle in (
        (["--older-than", "7 weeks"], "older_than: duration '7 weeks'"),
        (["--status", "completed,running"], "status running cannot be pruned"),
    ):
        proc = run_cli(["prune", *args], service_env, check=False)
        assert proc.returncode != 0
        assert needle in proc.stderr
        assert "Traceback" not in proc.stderr


def test_sigkilled_prune_leaves_consistent_history(
    engine: Engine, service_env: dict[str, str], tmp_path: Path
) -> None:
    seeded = set()
    for _ in range(4):
        seeded |= {str(i) for i in history.seed_tasks(engine, 1000, "failed", age=60 * DAY, runs=3)}
    archive = tmp_path / "pruned.jsonl"
    env = {**service_env, "TASKRT_RETENTION_BATCH_SIZE": "50"}
    proc = subprocess.Popen(
        [TASKRT, "prune", "--archive", str(archive)],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: history.counts(engine)["tasks"] <= 3000 or proc.poll() is not None,
            60,
            interval=0.02,
            message="the prune to delete its first batches",
        )
        assert proc.poll() is None, "the prune finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        assert proc.stderr is not None
        proc.stderr.close()

    assert history.orphans(engine) == (0, 0)
    left = history.ids(engine)
    deleted = seeded - left
    assert deleted
    assert left
    archived = set()
    for line in archive.read_text().splitlines():
        try:
            archived.add(json.loads(line)["id"])
        except json.JSONDecodeError:  # a line cut by the kill: its batch was never deleted
            continue
    assert deleted <= archived  # nothing deleted that was not written
    # the next prune finishes the job
    run_cli(["prune", "--archive", str(archive)], env)
    assert not seeded & history.ids(engine)
    assert history.orphans(engine) == (0, 0)


def test_worker_maintenance_prunes_history_and_spares_live_work(
    engine: Engine, service_env: dict[str, str], spawn: WorkerFactory
) -> None:
    old = {str(i) for i in history.seed_tasks(engine, 30, "completed", age=2 * DAY, runs=2)}
    cancelled = {str(i) for i in history.seed_tasks(engine, 5, "cancelled", age=2 * DAY)}
    # live tasks sit in a queue the worker does not serve, so it leaves them as they are
    queued = history.seed_tasks(engine, 3, "queued", queue="elsewhere")
    running = history.seed_tasks(engine, 3, "running", queue="elsewhere")
    retrying = history.seed_tasks(engine, 3, "retrying", queue="elsewhere", runs=2)
    _, template = history.seed_schedule(engine, fire_ages=[40 * DAY, 60])
    history.seed_audit(engine, 12, age=2 * DAY)
    history.seed_audit(engine, 3, age=60)
    env = {
        **service_env,
        "TASKRT_RETENTION_COMPLETED": "1d",
        "TASKRT_RETENTION_CANCELLED": "1d",
        "TASKRT_RETENTION_AUDIT": "1d",
        "TASKRT_RETENTION_BATCH_SIZE": "10",
        "TASKRT_RETENTION_INTERVAL": "0.2",
    }
    worker = spawn(env, "pruner", "--queues", "default")

    wait_for(
        lambda: (
            not (old | cancelled) & history.ids(engine)
            and history.counts(engine)["audit_log"] <= 3
            and history.counts(engine)["schedule_fires"] == 1
        ),
        60,
        message="the maintenance pass to prune the old history",
    )
    left = history.ids(engine)
    for kept in (queued, running, retrying, [template]):
        assert {str(i) for i in kept} <= left
    statuses = {
        status: n
        for status, n in history.task_statuses(engine).items()
        if status in ("queued", "running", "retrying")
    }
    assert statuses == {"queued": 3, "running": 3, "retrying": 3}
    assert history.counts(engine)["audit_log"] == 3
    assert history.orphans(engine) == (0, 0)
    # batches of 10, one turn working the backlog off, one line for the turn
    assert "pruned: tasks=35, runs=65, audit=12, schedule_fires=1" in worker.log()


def test_prune_on_sqlite(sqlite_url: str, tmp_path: Path) -> None:
    engine = create_engine(sqlite_url)
    try:
        old = {str(i) for i in history.seed_tasks(engine, 30, "cancelled", age=8 * DAY, runs=2)}
        kept = {str(i) for i in history.seed_tasks(engine, 4, "queued")}
        env = service_env_for(sqlite_url, retention_batch_size=8)
        dry = run_cli(["prune", "--dry-run", "--json"], env)
        assert json.loads(dry.stdout)["deleted"]["tasks"] == 30
        archive = tmp_path / "pruned.jsonl"
        done = run_cli(["prune", "--json", "--archive", str(archive)], env)
        assert json.loads(done.stdout)["deleted"] == {
            "tasks": 30,
            "runs": 60,
            "audit": 0,
            "schedule_fires": 0,
        }
        assert {json.loads(line)["id"] for line in archive.read_text().splitlines()} == old
        assert history.ids(engine) == kept
        assert history.orphans(engine) == (0, 0)
    finally:
        engine.dispose()
