"""Every route against every kind of caller: the documented 401, 403 or success for each.

Callers: no credentials, two malformed headers, a wrong key, a revoked key, an expired JWT, and
API keys (plus a JWT) of the reader, producer and admin roles. A route added to the app without
a row here fails ``test_the_matrix_covers_every_api_route``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from taskrt.api import openapi_document
from taskrt.auth import Role
from tests.api.conftest import Api

pytestmark = pytest.mark.services


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    role: Role
    success: int
    body: Any = None

    def path(self, api: Api) -> str:
        """The concrete path: task and schedule routes get a fresh task or schedule each call."""
        if "{task_id}" in self.template:
            task = api.client.post(
                "/api/v1/tasks", json={"name": "example.echo"}, headers=api.auth("producer")
            ).json()
            return self.template.replace("{task_id}", task["id"])
        if "{schedule_id}" in self.template:
            schedule = api.client.post(
                "/api/v1/schedules", json=SCHEDULE, headers=api.auth("admin")
            ).json()
            return self.template.replace("{schedule_id}", schedule["id"])
        return self.template.replace("{name}", "default")


SCHEDULE = {"cron": "*/5 * * * *", "task": "example.echo"}


ROUTES = [
    Route("GET", "/api/v1/tasks", Role.READER, 200),
    Route("POST", "/api/v1/tasks", Role.PRODUCER, 201, {"name": "example.echo"}),
    Route("POST", "/api/v1/tasks/batch", Role.PRODUCER, 201, {"tasks": [{"name": "example.echo"}]}),
    Route("GET", "/api/v1/tasks/{task_id}", Role.READER, 200),
    Route("GET", "/api/v1/tasks/{task_id}/runs", Role.READER, 200),
    Route("POST", "/api/v1/tasks/{task_id}/cancel", Role.PRODUCER, 200),
    # a fresh task is still queued: a caller the role admits gets past auth to the 409
    Route("POST", "/api/v1/tasks/{task_id}/retry", Role.PRODUCER, 409),
    Route("GET", "/api/v1/queues", Role.READER, 200),
    Route("POST", "/api/v1/queues/{name}/pause", Role.ADMIN, 200),
    Route("POST", "/api/v1/queues/{name}/resume", Role.ADMIN, 200),
    Route("GET", "/api/v1/queues/{name}/dlq", Role.READER, 200),
    Route("POST", "/api/v1/queues/{name}/dlq/replay", Role.ADMIN, 200, {"all": True}),
    Route("GET", "/api/v1/schedules", Role.READER, 200),
    Route("POST", "/api/v1/schedules", Role.ADMIN, 201, SCHEDULE),
    Route("GET", "/api/v1/schedules/{schedule_id}", Role.READER, 200),
    Route("PATCH", "/api/v1/schedules/{schedule_id}", Role.ADMIN, 200, {"enabled": False}),
    Route("DELETE", "/api/v1/schedules/{schedule_id}", Role.ADMIN, 204),
    Route("GET", "/api/v1/schedules/{schedule_id}/fires", Role.READER, 200),
    Route("GET", "/api/v1/schedules/{schedule_id}/next", Role.READER, 200),
    Route("GET", "/api/v1/workers", Role.READER, 200),
    Route("GET", "/api/v1/audit", Role.ADMIN, 200),
    Route("POST", "/api/v1/admin/prune", Role.ADMIN, 200, {"dry_run": True}),
]


def _revoked_key(api: Api) -> str:
    key = api.key("admin", name="revoked")
    (record,) = [k for k in api.store.list_api_keys() if k.name == "revoked"]
    api.store.revoke_api_key(record.id)
    return key


CallerHeaders = Callable[[Api], dict[str, str]]

# name -> (headers for the request, role granted or None when the answer must be 401)
CALLERS: dict[str, tuple[CallerHeaders, Role | None]] = {
    "no credentials": (lambda api: {}, None),
    "malformed Authorization": (lambda api: {"Authorization": "Basic dXNlcjpwYXNz"}, None),
    "malformed X-API-Key": (lambda api: {"X-API-Key": "not a key"}, None),
    "wrong key": (
        lambda api: {"Authorization": f"Bearer trk_{api.key('admin')[4:12]}_{'A' * 43}"},
        None,
    ),
    "revoked key": (lambda api: {"X-API-Key": _revoked_key(api)}, None),
    "expired JWT": (
        lambda api: {"Authorization": f"Bearer {api.jwt('admin', exp=int(time.time()) - 60)}"},
        None,
    ),
    "reader key": (lambda api: api.auth("reader"), Role.READER),
    "producer key": (
        lambda api: {"X-API-Key": api.auth("producer")["Authorization"][7:]},
        Role.PRODUCER,
    ),
    "admin key": (lambda api: api.auth("admin"), Role.ADMIN),
    "producer JWT": (lambda api: {"Authorization": f"Bearer {api.jwt('producer')}"}, Role.PRODUCER),
}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.template}")
def test_route_answers_each_caller_as_documented(route: Route, api: Api) -> None:
    headers = {name: make(api) for name, (make, _) in CALLERS.items()}
    outcomes: dict[str, int] = {}
    expected: dict[str, int] = {}
    for name, (_, role) in CALLERS.items():
        response = api.client.request(
            route.method, route.path(api), json=route.body, headers=headers[name]
        )
        outcomes[name] = response.status_code
        if role is None:
            expected[name] = 401
            assert response.headers.get("www-authenticate", "").startswith("Bearer")
        else:
            expected[name] = route.success if role.allows(route.role) else 403
        if response.status_code == 204:  # no content, so no content type
            assert response.content == b""
            continue
        assert response.headers["content-type"].startswith(
            "application/problem+json" if response.status_code >= 400 else "application/json"
        )
    assert outcomes == expected


def test_the_matrix_covers_every_api_route() -> None:
    documented = {
        (method.upper(), path)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if path.startswith("/api/")
    }
    assert documented == {(r.method, r.template) for r in ROUTES}


def test_every_route_names_its_role_in_the_openapi_document() -> None:
    roles = {
        (method.upper(), path): op.get("x-taskrt-role")
        for path, item in openapi_document()["paths"].items()
        for method, op in item.items()
    }
    for route in ROUTES:
        assert roles[(route.method, route.template)] == route.role.value
    assert roles[("GET", "/healthz")] is None


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs"])
def test_public_routes_need_no_credentials(path: str, api: Api) -> None:
    assert api.client.get(path).status_code == 200


def test_disabled_auth_makes_every_caller_an_anonymous_admin(
    make_api: Callable[..., Api], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="taskrt.api"):
        api = make_api(auth_disabled=True)
    assert "AUTHENTICATION IS DISABLED" in caplog.text
    response = api.client.post("/api/v1/queues/default/pause")
    assert response.status_code == 200
    rows = api.store.list_audit(action="queue.pause")
    assert [r.actor for r in rows] == ["disabled:anonymous"]


def test_an_unknown_backend_name_is_a_configuration_error(make_api: Callable[..., Api]) -> None:
    from taskrt.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"unknown auth backend 'ldap'.*apikey"):
        make_api(auth_backends=["apikey", "ldap"])


def test_a_backend_failure_other_than_bad_credentials_is_not_a_401(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskrt.exceptions import BackendUnavailableError

    def down(prefix: str) -> None:
        raise BackendUnavailableError("database error: connection refused")

    monkeypatch.setattr(api.store, "api_key_by_prefix", down)
    response = api.client.get("/api/v1/tasks", headers={"X-API-Key": f"trk_{'0' * 8}_{'A' * 43}"})
    assert response.status_code == 503
    assert "connection refused" not in response.text


def test_the_exact_credential_is_the_audit_actor(api: Api) -> None:
    """An API key is recorded by its prefix (names may repeat), a JWT by its subject."""
    key = api.key("producer", name="ci-bot")
    created = api.client.post(
        "/api/v1/tasks", json={"name": "example.echo"}, headers={"X-API-Key": key}
    )
    jwt_created = api.client.post(
        "/api/v1/tasks",
        json={"name": "example.echo"},
        headers={"Authorization": f"Bearer {api.jwt('producer', sub='alice')}"},
    )
    actors = {r.target_id: r.actor for r in api.store.list_audit(action="task.create")}
    prefix = key.split("_")[1]
    assert actors == {
        created.json()["id"]: f"apikey:{prefix}",
        jwt_created.json()["id"]: "jwt:alice",
    }


def test_the_audit_actor_of_a_random_request_id_is_recorded(api: Api) -> None:
    rid = f"req-{uuid.uuid4().hex}"
    api.client.post("/api/v1/queues/q1/pause", headers={**api.auth("admin"), "X-Request-ID": rid})
    (row,) = api.store.list_audit(action="queue.pause")
    assert (row.request_id, row.client_ip, row.target_id) == (rid, "testclient", "q1")
