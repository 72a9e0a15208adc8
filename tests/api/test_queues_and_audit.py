"""Queues, dead letters, workers and the audit log over HTTP; one audit row per change, none for
a failed or rolled-back request."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from taskrt.records import WorkerInfo
from tests.api.conftest import Api
from tests.support.db import Db

pytestmark = pytest.mark.services

ECHO = {"name": "example.echo"}
SCHEDULE = {"cron": "*/5 * * * *", "task": "example.echo"}


def _task(api: Api, **fields: Any) -> str:
    response = api.client.post(
        "/api/v1/tasks", json={**ECHO, **fields}, headers=api.auth("producer")
    )
    assert response.status_code == 201, response.text
    task_id: str = response.json()["id"]
    return task_id


def _dead_letter(db: Db, task_id: str) -> None:
    """Put a task where a worker that gave up on it would: failed, its run failed."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE task_runs SET status = 'failed', finished_at = now(), "
            "error_type = 'RuntimeError', error_message = 'boom' WHERE task_id = %(t)s",
            {"t": uuid.UUID(task_id)},
        )
        conn.exec_driver_sql(
            "UPDATE tasks SET status = 'failed', failure_reason = 'error', finished_at = now() "
            "WHERE id = %(t)s",
            {"t": uuid.UUID(task_id)},
        )


def test_queues_show_counts_and_pause_state(api: Api) -> None:
    _task(api)
    _task(api, queue="high")
    _task(api, queue="high", delay=60)
    admin = api.auth("admin")
    assert api.client.post("/api/v1/queues/high/pause", headers=admin).json() == {
        "name": "high",
        "paused": True,
    }
    queues = {
        q["name"]: q
        for q in api.client.get("/api/v1/queues", headers=api.auth("reader")).json()["items"]
    }
    assert queues["default"]["ready"] == 1
    assert (queues["high"]["ready"], queues["high"]["delayed"], queues["high"]["paused"]) == (
        1,
        1,
        True,
    )
    api.client.post("/api/v1/queues/high/resume", headers=admin)
    queues = api.client.get("/api/v1/queues", headers=api.auth("reader")).json()["items"]
    assert not any(q["paused"] for q in queues)
    bad = api.client.post("/api/v1/queues/bad%20name/pause", headers=admin)
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["path", "name"]


def test_dead_letters_list_page_and_replay(api: Api, db: Db) -> None:
    dead = [_task(api) for _ in range(3)]
    alive = _task(api)
    for task_id in dead:
        _dead_letter(db, task_id)
    reader = api.auth("reader")
    first = api.client.get("/api/v1/queues/default/dlq", params={"limit": 2}, headers=reader)
    page = first.json()
    assert [t["id"] for t in page["items"]] == [dead[2], dead[1]]
    assert page["items"][0]["latest_run"]["error_message"] == "boom"
    rest = api.client.get(
        "/api/v1/queues/default/dlq", params={"cursor": page["next_cursor"]}, headers=reader
    ).json()
    assert [t["id"] for t in rest["items"]] == [dead[0]]
    assert rest["next_cursor"] is None

    admin = api.auth("admin")
    replayed = api.client.post(
        "/api/v1/queues/default/dlq/replay", json={"task_ids": [dead[0], alive]}, headers=admin
    )
    assert replayed.json() == {"replayed": [dead[0]], "skipped": [alive]}
    everything = api.client.post(
        "/api/v1/queues/default/dlq/replay", json={"all": True}, headers=admin
    )
    assert sorted(everything.json()["replayed"]) == sorted(dead[1:])
    task = api.client.get(f"/api/v1/tasks/{dead[1]}", headers=reader).json()
    assert (task["status"], task["latest_run"]["attempt"]) == ("queued", 2)
    for body in ({}, {"all": True, "task_ids": [alive]}, {"all": False}, {"task_ids": []}):
        response = api.client.post("/api/v1/queues/default/dlq/replay", json=body, headers=admin)
        assert response.status_code == 422, body


def test_workers_are_listed(api: Api) -> None:
    info = WorkerInfo(
        id=uuid.uuid4(),
        name="w1",
        hostname="host",
        pid=os.getpid(),
        queues=("high", "default"),
        concurrency=4,
        version="0.1.0",
    )
    api.store.register_worker(info)
    (worker,) = api.client.get("/api/v1/workers", headers=api.auth("reader")).json()["items"]
    assert (worker["name"], worker["queues"], worker["status"]) == (
        "w1",
        ["high", "default"],
        "online",
    )


def test_audit_log_filters_and_pages(api: Api) -> None:
    tasks = [_task(api) for _ in range(5)]
    api.client.post(f"/api/v1/tasks/{tasks[0]}/cancel", headers=api.auth("producer"))
    admin = api.auth("admin")
    created = api.client.get(
        "/api/v1/audit", params={"action": "task.create", "limit": 3}, headers=admin
    ).json()
    assert [r["target_id"] for r in created["items"]] == tasks[:1:-1]
    newest = created["items"][0]
    assert (newest["actor"], newest["target_type"], newest["details"]) == (
        f"apikey:{api.keys['producer'].split('_')[1]}",  # the key's prefix, not its name
        "task",
        {"name": "example.echo", "queue": "default"},
    )
    assert newest["client_ip"]
    assert newest["request_id"]
    more = api.client.get(
        "/api/v1/audit",
        params={"action": "task.create", "cursor": created["next_cursor"]},
        headers=admin,
    ).json()
    assert [r["target_id"] for r in more["items"]] == tasks[1::-1]
    cancelled = api.client.get(
        "/api/v1/audit", params={"target_id": tasks[0]}, headers=admin
    ).json()["items"]
    assert [r["action"] for r in cancelled] == ["task.cancel", "task.create"]
    by_actor = api.client.get(
        "/api/v1/audit", params={"actor": "apikey:nobody"}, headers=admin
    ).json()
    assert by_actor == {"items": [], "next_cursor": None}
    task_cursor = api.client.get("/api/v1/tasks", params={"limit": 1}, headers=admin).json()[
        "next_cursor"
    ]
    wrong_kind = api.client.get("/api/v1/audit", params={"cursor": task_cursor}, headers=admin)
    assert wrong_kind.status_code == 422


# --- exactly one audit row per change -----------------------------------------------------


def _mutations(api: Api, db: Db) -> dict[str, tuple[Callable[[], Any], str]]:
    """Each mutating route: a call that succeeds, and the audit action it must write."""
    victim = _task(api)
    dead = _task(api)
    _dead_letter(db, dead)
    producer, admin = api.auth("producer"), api.auth("admin")
    post, patch, delete = api.client.post, api.client.patch, api.client.delete
    made = post("/api/v1/schedules", json=SCHEDULE, headers=admin)
    schedule = f"/api/v1/schedules/{made.json()['id']}"
    return {
        "create": (lambda: post("/api/v1/tasks", json=ECHO, headers=producer), "task.create"),
        "batch": (
            lambda: post("/api/v1/tasks/batch", json={"tasks": [ECHO]}, headers=producer),
            "task.create",
        ),
        "cancel": (lambda: post(f"/api/v1/tasks/{victim}/cancel", headers=producer), "task.cancel"),
        # the task the line above cancelled, run again
        "retry": (lambda: post(f"/api/v1/tasks/{victim}/retry", headers=producer), "task.retry"),
        "pause": (lambda: post("/api/v1/queues/q/pause", headers=admin), "queue.pause"),
        "resume": (lambda: post("/api/v1/queues/q/resume", headers=admin), "queue.resume"),
        "replay": (
            lambda: post("/api/v1/queues/default/dlq/replay", json={"all": True}, headers=admin),
            "dlq.replay",
        ),
        "schedule create": (
            lambda: post("/api/v1/schedules", json=SCHEDULE, headers=admin),
            "schedule.create",
        ),
        "schedule update": (
            lambda: patch(schedule, json={"cron": "0 * * * *", "name": "hourly"}, headers=admin),
            "schedule.update",
        ),
        "schedule disable": (
            lambda: patch(schedule, json={"enabled": False}, headers=admin),
            "schedule.disable",
        ),
        "schedule enable": (
            lambda: patch(schedule, json={"enabled": True}, headers=admin),
            "schedule.enable",
        ),
        "schedule delete": (lambda: delete(schedule, headers=admin), "schedule.delete"),
    }


def test_every_mutating_route_writes_exactly_one_audit_row(api: Api, db: Db) -> None:
    mutations = _mutations(api, db)
    for name, (call, action) in mutations.items():
        before = db.scalar("SELECT coalesce(max(id), 0) FROM audit_log")
        response = call()
        assert response.status_code in (200, 201, 204), (name, response.text)
        rows = db.rows("SELECT * FROM audit_log WHERE id > :b", b=before)
        assert len(rows) == 1, name
        (row,) = rows
        assert row.action == action
        assert row.actor.startswith("apikey:")
        assert row.request_id == response.headers["x-request-id"]
        assert row.client_ip == "testclient"


def test_a_failed_request_writes_no_audit_row(api: Api, db: Db) -> None:
    finished = _task(api)
    api.client.post(f"/api/v1/tasks/{finished}/cancel", headers=api.auth("producer"))
    queued = _task(api)
    producer, admin, reader = api.auth("producer"), api.auth("admin"), api.auth("reader")
    post = api.client.post
    unknown_schedule = f"/api/v1/schedules/{uuid.uuid4()}"
    failures = [
        (post("/api/v1/tasks", json={"name": "example.nope"}, headers=producer), 422),
        (post("/api/v1/tasks", json=ECHO, headers=reader), 403),
        (post("/api/v1/tasks", json=ECHO), 401),
        (
            post("/api/v1/tasks/batch", json={"tasks": [ECHO, {"name": "x.y"}]}, headers=producer),
            422,
        ),
        (post(f"/api/v1/tasks/{finished}/cancel", headers=producer), 409),
        (post(f"/api/v1/tasks/{uuid.uuid4()}/cancel", headers=producer), 404),
        (post(f"/api/v1/tasks/{queued}/retry", headers=producer), 409),
        (post(f"/api/v1/tasks/{uuid.uuid4()}/retry", headers=producer), 404),
        (post(f"/api/v1/tasks/{finished}/retry", headers=reader), 403),
        (post("/api/v1/queues/bad name/pause", headers=admin), 422),
        (post("/api/v1/queues/q/pause", headers=producer), 403),
        (post("/api/v1/queues/q/dlq/replay", json={}, headers=admin), 422),
        (post("/api/v1/schedules", json={**SCHEDULE, "cron": "61 * * * *"}, headers=admin), 422),
        (post("/api/v1/schedules", json={**SCHEDULE, "timezone": "Mars/Base"}, headers=admin), 422),
        (post("/api/v1/schedules", json={**SCHEDULE, "task": "x.y"}, headers=admin), 422),
        (post("/api/v1/schedules", json=SCHEDULE, headers=producer), 403),
        (post("/api/v1/schedules", json=SCHEDULE), 401),
        (api.client.patch(unknown_schedule, json={"enabled": False}, headers=admin), 404),
        (api.client.patch(unknown_schedule, json={"enabled": False}, headers=producer), 403),
        (api.client.patch(unknown_schedule, json={}, headers=admin), 422),
        (api.client.delete(unknown_schedule, headers=admin), 404),
        (api.client.delete(unknown_schedule, headers=reader), 403),
    ]
    assert [r.status_code for r, _ in failures] == [code for _, code in failures]
    before = db.scalar("SELECT count(*) FROM audit_log")
    assert before == 3  # the setup's two creates and one cancel only


def test_a_request_that_fails_after_writing_its_audit_row_leaves_nothing(
    api: Api, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row is written in the change's own transaction: a failure after it rolls both back.

    A dedup key sends the create through the multi-statement transaction (a create without one
    is a single statement on PostgreSQL, its audit rows included: nothing can fail between)."""
    import taskrt.store.tasks as task_statements

    real = task_statements.write_audit

    def write_then_fail(*args: Any, **kwargs: Any) -> None:
        real(*args, **kwargs)
        raise RuntimeError("the disk caught fire after the audit insert")

    monkeypatch.setattr(task_statements, "write_audit", write_then_fail)
    response = api.client.post(
        "/api/v1/tasks", json={**ECHO, "dedup_key": "once"}, headers=api.auth("producer")
    )
    assert response.status_code == 500
    assert db.scalar("SELECT count(*) FROM audit_log") == 0
    assert db.scalar("SELECT count(*) FROM tasks") == 0
