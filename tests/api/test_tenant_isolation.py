"""Tenant isolation over HTTP: for every route, tenant B's credentials get 404 (or an empty
list) for tenant A's objects, and nothing of A's changes.

Tenant A (``acme``) owns a queued task, a dead-lettered task, a schedule with a fire, a paused
queue ``aq``, a worker and an audit trail. Every route of the OpenAPI document has a row in
:data:`ROUTES`; each is called with B's (``bravo``) admin key, the highest role a tenant
credential holds, on A's ids and names, and the answer is checked against the row. A snapshot
of A's rows (every table with a tenant column, and its schedule fires) and of A's Redis keys
taken before the matrix is compared with one taken after.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from taskrt.api import openapi_document
from taskrt.apikeys import create_api_key
from taskrt.auth import Role
from taskrt.records import WorkerInfo
from taskrt.schedule_service import ScheduleService
from tests.api.conftest import Api
from tests.support import services
from tests.support.tenants import create_tenant, snapshot

pytestmark = pytest.mark.services

A, B = "acme", "bravo"
RANDOM = "00000000-0000-7000-8000-000000000000"


@dataclass
class World:
    """Tenant A's objects, B's credentials, and the app."""

    api: Api
    a_keys: dict[str, str]
    b_keys: dict[str, str]
    queued: str
    failed: str
    schedule: str
    dedup_key: str
    a_worker: str

    def a(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.a_keys[role]}"}

    def b(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.b_keys[role]}"}

    @property
    def a_ids(self) -> set[str]:
        return {self.queued, self.failed}


def _keys(api: Api, tenant: str) -> dict[str, str]:
    return {
        role: create_api_key(api.store, name=f"{tenant}-{role}", role=role, tenant=tenant)[1]
        for role in ("reader", "producer", "admin")
    }


@pytest.fixture
def world(api: Api) -> World:
    engine = api.store.engine
    create_tenant(engine, A)
    create_tenant(engine, B)
    a_keys, b_keys = _keys(api, A), _keys(api, B)
    admin = {"Authorization": f"Bearer {a_keys['admin']}"}
    post = api.client.post
    queued = post(
        "/api/v1/tasks",
        json={"name": "example.echo", "queue": "aq2", "dedup_key": "acme-key"},
        headers=admin,
    )
    assert queued.status_code == 201, queued.text
    failed = post("/api/v1/tasks", json={"name": "example.echo", "queue": "aq2"}, headers=admin)
    assert failed.status_code == 201, failed.text
    failed_id = failed.json()["id"]
    with engine.begin() as conn:  # dead-lettered an hour ago (no worker needed)
        when = {"id": uuid.UUID(failed_id)}
        conn.execute(
            sa.text(
                "UPDATE tasks SET status = 'failed', finished_at = now() - interval '1 hour' "
                "WHERE id = :id"
            ),
            when,
        )
        conn.execute(
            sa.text(
                "UPDATE task_runs SET status = 'failed', error_type = 'Boom', "
                "finished_at = now() - interval '1 hour' WHERE task_id = :id"
            ),
            when,
        )
    schedule = post(
        "/api/v1/schedules",
        json={"cron": "* * * * *", "task": "example.echo", "queue": "aq2"},
        headers=admin,
    )
    assert schedule.status_code == 201, schedule.text
    schedule_id = schedule.json()["id"]
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE schedules SET next_fire_at = date_trunc('minute', now()) WHERE id = :id"
            ),
            {"id": uuid.UUID(schedule_id)},
        )
    report = ScheduleService(api.service).fire_due()
    assert report.fires  # one (two if a minute turned meanwhile)
    assert post("/api/v1/queues/aq/pause", headers=admin).status_code == 200
    worker_id = uuid.uuid4()
    api.store.register_worker(
        WorkerInfo(
            id=worker_id,
            name="acme-worker",
            hostname="acme-host",
            pid=1,
            queues=("aq2",),
            concurrency=1,
            version="test",
            tenant=A,
        )
    )
    return World(
        api=api,
        a_keys=a_keys,
        b_keys=b_keys,
        queued=queued.json()["id"],
        failed=failed_id,
        schedule=schedule_id,
        dedup_key="acme-key",
        a_worker=str(worker_id),
    )


# --- the matrix -----------------------------------------------------------------------------


Check = Callable[[World, Any], None]


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    status: int
    """What B gets."""
    check: Check | None = None
    body: Any = None
    query: str = ""
    not_found: bool = False
    """An id route: the answer must equal the answer for a random id."""

    def path(self, world: World, *, random_id: bool = False) -> str:
        path = self.template.replace("{task_id}", RANDOM if random_id else self._task(world))
        path = path.replace("{schedule_id}", RANDOM if random_id else world.schedule)
        path = path.replace("{name}", "aq2")
        return path + self.query

    def _task(self, world: World) -> str:
        return world.failed if self.template.endswith("/retry") else world.queued


def _no_a_tasks(world: World, body: Any) -> None:
    assert not {item["id"] for item in body["items"]} & world.a_ids


def _created_in_b(world: World, body: Any) -> None:
    ids = {body["id"]} if "id" in body else {i["id"] for i in body["items"]}
    assert not ids & world.a_ids


def _no_a_queues(world: World, body: Any) -> None:
    by_name = {q["name"]: q for q in body["items"]}
    for name in ("aq", "aq2"):  # B may have a queue of that name: its own, empty one
        if name in by_name:
            counts = by_name[name]
            assert counts["ready"] == counts["delayed"] == counts["dlq"] == 0
            assert counts["paused"] is False


def _empty(world: World, body: Any) -> None:
    assert body["items"] == []


def _nothing_replayed(world: World, body: Any) -> None:
    assert body["replayed"] == []


def _no_a_schedules(world: World, body: Any) -> None:
    assert world.schedule not in {s["id"] for s in body["items"]}


def _no_a_workers(world: World, body: Any) -> None:
    assert world.a_worker not in {w["id"] for w in body["items"]}


def _no_a_audit(world: World, body: Any) -> None:
    targets = {row.get("target_id") for row in body["items"]}
    assert not targets & (world.a_ids | {world.schedule, "aq"})


def _pruned_nothing_of_a(world: World, body: Any) -> None:
    assert body["deleted"]["tasks"] == 0  # B has no finished task an hour old


ROUTES = [
    Route("GET", "/api/v1/tasks", 200, _no_a_tasks),
    Route("POST", "/api/v1/tasks", 201, _created_in_b, {"name": "example.echo", "queue": "bq"}),
    Route("POST", "/api/v1/tasks/batch", 201, _created_in_b, {"tasks": [{"name": "example.echo"}]}),
    Route("GET", "/api/v1/tasks/{task_id}", 404, not_found=True),
    Route("GET", "/api/v1/tasks/{task_id}/runs", 404, not_found=True),
    Route("POST", "/api/v1/tasks/{task_id}/cancel", 404, not_found=True),
    Route("POST", "/api/v1/tasks/{task_id}/retry", 404, not_found=True),
    Route("GET", "/api/v1/queues", 200, _no_a_queues),
    # queue names are per tenant: B pausing and resuming `aq2` touches B's `aq2` only
    Route("POST", "/api/v1/queues/{name}/pause", 200),
    Route("POST", "/api/v1/queues/{name}/resume", 200),
    Route("GET", "/api/v1/queues/{name}/dlq", 200, _empty),
    Route("POST", "/api/v1/queues/{name}/dlq/replay", 200, _nothing_replayed, {"all": True}),
    Route("GET", "/api/v1/schedules", 200, _no_a_schedules),
    Route("POST", "/api/v1/schedules", 201, None, {"cron": "*/5 * * * *", "task": "example.echo"}),
    Route("GET", "/api/v1/schedules/{schedule_id}", 404, not_found=True),
    Route("PATCH", "/api/v1/schedules/{schedule_id}", 404, None, {"enabled": False}, "", True),
    Route("DELETE", "/api/v1/schedules/{schedule_id}", 404, not_found=True),
    Route("GET", "/api/v1/schedules/{schedule_id}/fires", 404, not_found=True),
    Route("GET", "/api/v1/schedules/{schedule_id}/next", 404, not_found=True),
    Route("GET", "/api/v1/workers", 200, _no_a_workers),
    Route("GET", "/api/v1/audit", 200, _no_a_audit),
    Route("POST", "/api/v1/admin/prune", 200, _pruned_nothing_of_a, {"older_than": "1s"}),
    # managing tenants needs the operator role: a tenant's admin gets 403 (a role problem)
    Route("GET", "/api/v1/tenants", 403),
    Route("POST", "/api/v1/tenants", 403, None, {"name": "intruder"}),
    Route("GET", "/api/v1/tenants/{name}", 403),
    Route("PATCH", "/api/v1/tenants/{name}", 403, None, {"weight": 2}),
    Route("DELETE", "/api/v1/tenants/{name}", 403),
]

# list routes again with each filter that could reach A's tasks
TASK_FILTERS = [
    "status=queued",
    "status=failed",
    "queue=aq2",
    "name=example.echo",
    "dedup_key=acme-key",
    "kind=scheduled",
    "error_type=Boom",
    "finished_before=2100-01-01T00:00:00Z",
]


def _same_problem(found: Any, random: Any, world: World, path: str) -> None:
    """The 404 for A's id says exactly what the 404 for a random id says (the ids aside)."""

    def shape(body: dict[str, Any], object_id: str) -> dict[str, Any]:
        return {
            k: json.dumps(v).replace(object_id, "<id>")
            for k, v in body.items()
            if k not in ("request_id", "instance")
        }

    a_id = world.schedule if "schedules" in path else world.queued
    if path.endswith("/retry"):
        a_id = world.failed
    assert shape(found, a_id) == shape(random, RANDOM)


def test_tenant_b_reaches_nothing_of_tenant_a(world: World, redis_prefix: str) -> None:
    api = world.api
    redis = services.redis_client()
    before = snapshot(api.store.engine, A, redis, redis_prefix)
    failures: list[str] = []
    for route in ROUTES:
        path = route.path(world)
        response = api.client.request(
            route.method,
            path,
            json=route.body,
            headers={**world.b(), "Content-Type": "application/json"},
        )
        where = f"{route.method} {path}"
        if response.status_code != route.status:
            failures.append(f"{where}: {response.status_code} {response.text[:200]}")
            continue
        if route.not_found:
            random = api.client.request(
                route.method, route.path(world, random_id=True), json=route.body, headers=world.b()
            )
            try:
                _same_problem(response.json(), random.json(), world, path)
            except AssertionError:
                failures.append(f"{where}: {response.text} differs from {random.text}")
        elif route.check is not None:
            try:
                route.check(world, response.json())
            except AssertionError as exc:
                failures.append(f"{where}: {exc!r} in {response.text[:300]}")
    for query in TASK_FILTERS:
        response = api.client.get(f"/api/v1/tasks?{query}", headers=world.b())
        if response.status_code != 200 or {t["id"] for t in response.json()["items"]} & world.a_ids:
            failures.append(f"GET /api/v1/tasks?{query}: {response.status_code} {response.text}")
    replay = api.client.post(
        "/api/v1/queues/aq2/dlq/replay", json={"task_ids": [world.failed]}, headers=world.b()
    )
    if replay.json() != {"replayed": [], "skipped": [world.failed]}:
        failures.append(f"replay of A's id from B: {replay.text}")
    after = snapshot(api.store.engine, A, redis, redis_prefix)
    redis.close()
    assert not failures, "\n".join(failures)
    assert after == before
    # and A still sees its own objects
    own = api.client.get(f"/api/v1/tasks/{world.queued}", headers=world.a("reader"))
    assert own.status_code == 200


def test_the_matrix_covers_every_api_route() -> None:
    documented = {
        (method.upper(), path)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if path.startswith("/api/")
    }
    assert documented == {(r.method, r.template) for r in ROUTES}


def test_a_jwt_of_tenant_b_sees_none_of_a(world: World) -> None:
    token = world.api.jwt("admin", tenant=B)
    headers = {"Authorization": f"Bearer {token}"}
    client = world.api.client
    assert client.get(f"/api/v1/tasks/{world.queued}", headers=headers).status_code == 404
    assert client.get("/api/v1/tasks", headers=headers).json()["items"] == []
    mine = client.get(
        f"/api/v1/tasks/{world.queued}",
        headers={"Authorization": f"Bearer {world.api.jwt('reader', tenant=A)}"},
    )
    assert mine.status_code == 200


def test_a_dedup_key_is_per_tenant(world: World) -> None:
    body = {"name": "example.echo", "dedup_key": world.dedup_key}
    response = world.api.client.post("/api/v1/tasks", json=body, headers=world.b("producer"))
    assert response.status_code == 201
    assert response.json()["id"] != world.queued


def test_the_audit_rows_of_a_request_land_in_its_tenant(world: World) -> None:
    client = world.api.client
    client.post("/api/v1/queues/aq/pause", headers=world.b())
    rows = world.api.store.list_audit(action="queue.pause", tenant=B)
    assert [r.target_id for r in rows] == ["aq"]
    a_rows = world.api.store.list_audit(action="queue.pause", tenant=A)
    assert [r.target_id for r in a_rows] == ["aq"]  # A's own, from the setup


# --- the operator and the X-Taskrt-Tenant header --------------------------------------------


def test_an_operator_chooses_the_tenant_with_the_header(world: World) -> None:
    client = world.api.client
    operator = world.api.auth(Role.OPERATOR)
    assert client.get(f"/api/v1/tasks/{world.queued}", headers=operator).status_code == 404
    as_a = {**operator, "X-Taskrt-Tenant": A}
    assert client.get(f"/api/v1/tasks/{world.queued}", headers=as_a).status_code == 200
    cancelled = client.post(f"/api/v1/tasks/{world.queued}/cancel", headers=as_a)
    assert cancelled.status_code == 200
    rows = world.api.store.list_audit(action="task.cancel", tenant=A)
    assert [r.target_id for r in rows] == [world.queued]
    # without the header an operator's audit and worker listings cover every tenant
    workers = client.get("/api/v1/workers", headers=operator).json()["items"]
    assert world.a_worker in {w["id"] for w in workers}
    audit = client.get("/api/v1/audit?action=task.cancel", headers=operator).json()["items"]
    assert [row["target_id"] for row in audit] == [world.queued]


def test_an_operator_naming_an_unknown_tenant_gets_404(world: World) -> None:
    headers = {**world.api.auth(Role.OPERATOR), "X-Taskrt-Tenant": "nowhere"}
    response = world.api.client.get("/api/v1/tasks", headers=headers)
    assert response.status_code == 404
    assert "tenant not found" in response.json()["detail"]
    bad = {**world.api.auth(Role.OPERATOR), "X-Taskrt-Tenant": "Not A Name"}
    response = world.api.client.get("/api/v1/tasks", headers=bad)
    assert response.status_code == 400
    assert "X-Taskrt-Tenant" in response.json()["detail"]


def test_a_tenant_credential_cannot_choose_another_tenant(world: World) -> None:
    client = world.api.client
    response = client.get("/api/v1/tasks", headers={**world.b(), "X-Taskrt-Tenant": A})
    assert response.status_code == 403
    assert f"bound to tenant '{B}'" in response.json()["detail"]
    # naming its own tenant is fine
    same = client.get("/api/v1/tasks", headers={**world.b(), "X-Taskrt-Tenant": B})
    assert same.status_code == 200


def test_an_operator_key_must_belong_to_the_default_tenant(world: World) -> None:
    from taskrt.exceptions import ValidationError

    with pytest.raises(ValidationError, match="operator"):
        create_api_key(world.api.store, name="op", role="operator", tenant=A)


def test_scheduled_fires_land_in_the_schedule_tenant(world: World) -> None:
    fires = world.api.client.get(
        f"/api/v1/schedules/{world.schedule}/fires", headers=world.a("reader")
    ).json()["items"]
    fire = fires[0]
    task = world.api.client.get(f"/api/v1/tasks/{fire['task_id']}", headers=world.a("reader"))
    assert task.status_code == 200
    assert world.api.store.get_task(uuid.UUID(fire["task_id"]), tenant=A).tenant == A
