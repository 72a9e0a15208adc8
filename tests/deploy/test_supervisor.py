"""supervisord with the shipped ``supervisor/`` files keeps real ``taskrt worker`` processes alive:
a SIGKILLed worker is back within two seconds while tasks keep completing, and SIGTERM to
supervisord lets every worker drain, losing and repeating nothing (issue 8, items 4 and 5). It
also runs the API and the scheduler programs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from taskrt.client import Client
from tests.api.support import free_port
from tests.deploy.support import Supervisord
from tests.support.db import Db
from tests.support.procs import REPO_ROOT, run_cli, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

StartSupervisord = Callable[..., Supervisord]
WORKERS = ["worker-00", "worker-01"]


def _count(db: Db, sql: str, ids: list[uuid.UUID]) -> int:
    return int(db.scalar(sql, ids=ids))


def _completed(db: Db, ids: list[uuid.UUID]) -> int:
    return _count(
        db, "SELECT count(*) FROM tasks WHERE status = 'completed' AND id = ANY(:ids)", ids
    )


def _runs(db: Db, ids: list[uuid.UUID]) -> list[Any]:
    return db.rows(
        "SELECT r.task_id, r.attempt, r.status, r.outcome_reason, w.pid AS worker_pid "
        "FROM task_runs r LEFT JOIN workers w ON w.id = r.worker_id "
        "WHERE r.task_id = ANY(:ids) ORDER BY r.task_id, r.attempt",
        ids=ids,
    )


def _enqueue_sleeps(client: Client, count: int, ms: int) -> list[uuid.UUID]:
    results = client.enqueue_many([{"name": "example.sleep", "payload": {"ms": ms}}] * count)
    return [r.id for r in results]


def _assert_exactly_one_success_each(db: Db, ids: list[uuid.UUID]) -> None:
    per_task: dict[uuid.UUID, list[str]] = {task_id: [] for task_id in ids}
    for run in _runs(db, ids):
        per_task[run.task_id].append(run.status)
    wrong = {t: s for t, s in per_task.items() if s.count("succeeded") != 1}
    assert not wrong, f"tasks without exactly one succeeded run: {wrong}"
    assert _completed(db, ids) == len(ids)


def test_a_killed_worker_is_restarted_and_sigterm_drains_every_worker(
    supervisord: StartSupervisord, service_env: dict[str, str], client: Client, db: Db
) -> None:
    env = {
        **service_env,
        "TASKRT_WORKER_PROCESSES": "2",
        "TASKRT_WORKER_CONCURRENCY": "4",
        "TASKRT_LEASE_TTL": "2",
        "TASKRT_SHUTDOWN_GRACE": "10",
    }
    sv = supervisord(env, "programs/worker.conf")
    pids = sv.wait_running(WORKERS)
    wait_for(
        lambda: db.scalar("SELECT count(*) FROM workers WHERE status = 'online'") == 2,
        20,
        message="both workers registered",
    )
    names = {r.name for r in db.rows("SELECT name FROM workers")}
    assert {n.rsplit("-", 1)[-1] for n in names} == {"00", "01"}, names

    # --- SIGKILL one worker while tasks flow --------------------------------------------------
    first = _enqueue_sleeps(client, 150, ms=200)
    wait_for(lambda: _completed(db, first) >= 20, 30, message="20 tasks completed")
    killed_pid = pids["worker-00"]
    os.kill(killed_pid, signal.SIGKILL)
    killed_at = time.monotonic()
    done_at_kill = _completed(db, first)

    def respawned() -> int | None:
        info = sv.processes()["worker-00"]
        fresh = info["pid"] not in (0, killed_pid)
        return int(info["pid"]) if fresh and info["statename"] in ("STARTING", "RUNNING") else None

    new_pid = wait_for(respawned, 5, interval=0.02, message="worker-00 restarted")
    restart_seconds = time.monotonic() - killed_at
    assert restart_seconds < 2.0, f"restarted {restart_seconds:.2f} s after the SIGKILL"
    # the other worker went on meanwhile, and the restarted one joins in
    wait_for(
        lambda: _completed(db, first) >= done_at_kill + 8,
        5,
        message="tasks completing while worker-00 restarts",
    )
    sv.wait_running(WORKERS)
    assert sv.processes()["worker-01"]["pid"] == pids["worker-01"]
    wait_for(lambda: _completed(db, first) == len(first), 60, message="every task completed")
    _assert_exactly_one_success_each(db, first)
    # what the killed worker held was lost with it, and retried after its lease ran out
    lost = [r for r in _runs(db, first) if r.status != "succeeded"]
    assert lost, "the killed worker held no run"
    assert {(r.status, r.outcome_reason, r.worker_pid) for r in lost} == {
        ("lost", "lease_expired", killed_pid)
    }

    # --- SIGTERM to supervisord: every worker drains --------------------------------------
    second = _enqueue_sleeps(client, 24, ms=2000)

    def all_slots_busy() -> list[uuid.UUID] | None:
        # a claimed run is 'running' from the claim on, prefetched ones (waiting for a slot)
        # included: 4 slots and 4 prefetched per worker
        running = db.rows(
            "SELECT id FROM task_runs WHERE status = 'running' AND task_id = ANY(:ids)", ids=second
        )
        return [r.id for r in running] if len(running) >= 16 else None

    claimed = wait_for(all_slots_busy, 20, interval=0.05, message="both workers busy")
    assert any(r.worker_pid == new_pid for r in _runs(db, second)), "restarted worker idle"
    started = time.monotonic()
    assert sv.terminate(timeout=60) == 0, sv.log()[-4000:]
    drained_in = time.monotonic() - started
    log = sv.log()
    shutdown = log[log.index("received SIGTERM") :]
    # the workers waited for their running tasks (2 s each), well within the 10 s grace
    assert 0.3 < drained_in < 10, f"supervisord took {drained_in:.1f} s to stop"
    for name in WORKERS:
        assert f"stopped: {name} (exit status 0)" in shutdown, shutdown
    assert "SIGKILL" not in shutdown
    for name in WORKERS:
        assert f"-{name}: stopping; draining" in shutdown, shutdown

    # the 8 running tasks finished, the prefetched ones were handed back, the rest never
    # fetched: every run is still attempt 1, succeeded or queued untouched; nothing lost,
    # nothing run twice
    assert "handing back" in shutdown
    runs = _runs(db, second)
    assert len(runs) == len(second)
    assert {r.attempt for r in runs} == {1}
    assert {r.status for r in runs} == {"succeeded", "queued"}, {r.status for r in runs}
    assert sum(r.status == "succeeded" for r in runs) >= 8
    finished = db.rows("SELECT status FROM task_runs WHERE id = ANY(:ids)", ids=claimed)
    assert {r.status for r in finished} == {"succeeded", "queued"}

    # started again, the workers finish the rest, each task still with its single run
    sv_again = supervisord(env, "programs/worker.conf")
    sv_again.wait_running(WORKERS)
    wait_for(lambda: _completed(db, second) == len(second), 60, message="the rest completed")
    runs = _runs(db, second)
    assert [(r.attempt, r.status) for r in runs] == [(1, "succeeded")] * len(second)
    _assert_exactly_one_success_each(db, first + second)
    assert sv_again.terminate(timeout=60) == 0


def test_supervisord_also_runs_the_api_and_the_scheduler(
    supervisord: StartSupervisord, service_env: dict[str, str], db: Db
) -> None:
    port = free_port()
    env = {
        **service_env,
        "TASKRT_WORKER_PROCESSES": "1",
        "TASKRT_API_PORT": str(port),
        "TASKRT_API_WORKERS": "1",
    }
    sv = supervisord(env, "programs/*.conf")
    pids = sv.wait_running(["api", "scheduler", "worker-00"])
    key = run_cli(["apikey", "create", "--name", "sv", "--role", "producer"], env).stdout.strip()
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{base}/readyz", timeout=2).status_code == 200, 20)
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=10) as http:
        created = http.post("/api/v1/tasks", json={"name": "example.echo", "payload": [1, 2]})
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        wait_for(
            lambda: http.get(f"/api/v1/tasks/{task_id}").json()["status"] == "completed",
            20,
            message="the task created over HTTP completed",
        )
    assert db.scalar("SELECT count(*) FROM workers WHERE status = 'online'") == 1

    # the image's health check, in its supervisor mode, sees every program RUNNING
    check = subprocess.run(
        [sys.executable, str(REPO_ROOT / "config" / "docker" / "healthcheck.py")],
        env={**sv.env, "TASKRT_HEALTHCHECK": "supervisor", "TASKRT_SUPERVISOR_CONF": str(sv.conf)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0, check.stderr

    # nothing was restarted meanwhile, and SIGTERM stops all three cleanly
    assert {n: i["pid"] for n, i in sv.processes().items()} == pids
    assert sv.terminate(timeout=60) == 0, sv.log()[-4000:]
    log = sv.log()
    for name in ("scheduler", "worker-00"):
        assert f"stopped: {name} (exit status 0)" in log, log[-4000:]
    # uvicorn shuts down gracefully, then ends itself with the signal it was stopped by
    assert "Application shutdown complete" in log
    assert "stopped: api (terminated by SIGTERM)" in log
    assert "SIGKILL" not in log
