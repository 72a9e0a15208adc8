"""``/api/v1/tenants`` (operators only, audited) and the 429 of a tenant's quota on task
creation (issue 16)."""

from __future__ import annotations

import uuid

import pytest

from taskrt.apikeys import create_api_key
from taskrt.auth import Role
from taskrt.tenants import TenantService
from tests.api.conftest import Api

pytestmark = pytest.mark.services

ECHO = {"name": "example.echo"}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _tenant_key(api: Api, tenant: str, role: Role = Role.PRODUCER) -> dict[str, str]:
    _, key = create_api_key(
        api.store, name=f"{tenant}-{uuid.uuid4().hex[:6]}", role=role, tenant=tenant
    )
    return _bearer(key)


def test_operators_create_list_change_and_delete_tenants(api: Api) -> None:
    op = api.auth(Role.OPERATOR)
    created = api.client.post(
        "/api/v1/tenants",
        json={"name": "acme", "weight": 2, "max_queued": 100},
        headers=op,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert {k: body[k] for k in ("name", "weight", "max_queued", "enqueue_rate", "queued")} == {
        "name": "acme",
        "weight": 2,
        "max_queued": 100,
        "enqueue_rate": None,
        "queued": 0,
    }
    again = api.client.post("/api/v1/tenants", json={"name": "acme"}, headers=op)
    assert again.status_code == 409
    listed = api.client.get("/api/v1/tenants", headers=op).json()["items"]
    assert [t["name"] for t in listed] == ["acme", "default"]

    changed = api.client.patch(
        "/api/v1/tenants/acme",
        json={"max_queued": None, "enqueue_rate": "10/second"},
        headers=op,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["max_queued"], changed.json()["enqueue_rate"]) == (None, "10/second")
    assert api.client.get("/api/v1/tenants/acme", headers=op).json()["weight"] == 2

    assert api.client.delete("/api/v1/tenants/acme", headers=op).status_code == 204
    gone = api.client.get("/api/v1/tenants/acme", headers=op)
    assert gone.status_code == 404
    assert gone.headers["content-type"].startswith("application/problem+json")

    audit = api.client.get(
        "/api/v1/audit", params={"action": "tenant.create"}, headers=api.auth(Role.ADMIN)
    )
    # tenant changes are audited in the managed tenant, not in the operator's
    assert audit.status_code == 200


def test_every_other_role_gets_403(api: Api) -> None:
    for role in (Role.READER, Role.PRODUCER, Role.ADMIN):
        headers = api.auth(role)
        assert api.client.get("/api/v1/tenants", headers=headers).status_code == 403
        refused = api.client.post("/api/v1/tenants", json={"name": "x"}, headers=headers)
        assert refused.status_code == 403
    assert api.client.get("/api/v1/tenants").status_code == 401


def test_bad_tenant_input_gets_422_naming_the_field(api: Api) -> None:
    op = api.auth(Role.OPERATOR)
    for body, field in (
        ({"name": "Has Upper"}, "name"),
        ({"name": "ok", "weight": 0}, "weight"),
        ({"name": "ok", "max_queued": -1}, "max_queued"),
        ({"name": "ok", "enqueue_rate": "often"}, "enqueue_rate"),
        ({"name": "ok", "colour": "red"}, "colour"),
    ):
        response = api.client.post("/api/v1/tenants", json=body, headers=op)
        assert response.status_code == 422, (body, response.text)
        assert any(field in map(str, e["loc"]) for e in response.json()["errors"]), response.text
    empty = api.client.patch("/api/v1/tenants/default", json={}, headers=op)
    assert empty.status_code == 422
    assert (
        api.client.patch("/api/v1/tenants/nobody", json={"weight": 2}, headers=op).status_code
        == 404
    )


def test_deleting_default_or_a_tenant_with_tasks_gets_409(api: Api) -> None:
    op = api.auth(Role.OPERATOR)
    assert api.client.delete("/api/v1/tenants/default", headers=op).status_code == 409
    TenantService(api.store).create("busy")
    created = api.client.post("/api/v1/tasks", json=ECHO, headers=_tenant_key(api, "busy"))
    assert created.status_code == 201, created.text
    refused = api.client.delete("/api/v1/tenants/busy", headers=op)
    assert refused.status_code == 409
    assert "still holds tasks and API keys" in refused.json()["detail"]


def test_an_enqueue_over_max_queued_gets_429_naming_the_quota(api: Api) -> None:
    TenantService(api.store).create("q", max_queued=2)
    headers = _tenant_key(api, "q")
    for _ in range(2):
        assert api.client.post("/api/v1/tasks", json=ECHO, headers=headers).status_code == 201
    refused = api.client.post("/api/v1/tasks", json=ECHO, headers=headers)
    assert refused.status_code == 429
    assert refused.headers["content-type"].startswith("application/problem+json")
    body = refused.json()
    assert body["type"] == "urn:taskrt:problem:quota-exceeded"
    assert body["title"] == "Quota exceeded"
    assert (body["quota"], body["limit"]) == ("max-queued", 2)
    assert "'q'" in body["detail"]
    batch = api.client.post("/api/v1/tasks/batch", json={"tasks": [ECHO]}, headers=headers)
    assert batch.status_code == 429
    # the default tenant has no quota
    assert (
        api.client.post("/api/v1/tasks", json=ECHO, headers=api.auth("producer")).status_code == 201
    )


def test_an_enqueue_over_the_rate_gets_429_with_retry_after(api: Api) -> None:
    TenantService(api.store).create("r", enqueue_rate="1/minute")
    headers = _tenant_key(api, "r")
    assert api.client.post("/api/v1/tasks", json=ECHO, headers=headers).status_code == 201
    refused = api.client.post("/api/v1/tasks", json=ECHO, headers=headers)
    assert refused.status_code == 429
    assert refused.json()["quota"] == "enqueue-rate"
    assert refused.json()["limit"] == "1/minute"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
