"""Authentication and rate limiting come before the body is read (defect 4); audit rows and
rate-limit buckets name the exact credential (defect 5); JWT time claims must be numbers and
may be held to a maximum lifetime (defect 7). Issue 12."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest

from tests.api.conftest import JWT_SECRET, Api, ApiFactory

pytestmark = pytest.mark.services

MALFORMED = [b"{not json", b"[" * 5000, b'{"name": 1}', b"\xff\xfe"]
BODY_ROUTES = [
    ("POST", "/api/v1/tasks"),
    ("POST", "/api/v1/tasks/batch"),
    ("POST", "/api/v1/schedules"),
    ("PATCH", "/api/v1/schedules/0190a1b2-0000-7000-8000-000000000000"),
    ("POST", "/api/v1/queues/default/dlq/replay"),
]


def send(api: Api, method: str, path: str, body: bytes, **headers: str) -> Any:
    return api.client.request(
        method, path, content=body, headers={"content-type": "application/json", **headers}
    )


# --- defect 4 -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_an_anonymous_malformed_body_gets_401_not_a_parse_error(
    api: Api, method: str, path: str
) -> None:
    for body in MALFORMED:
        response = send(api, method, path, body)
        assert response.status_code == 401, response.text
        assert "www-authenticate" in response.headers
        bad_key = send(api, method, path, body, **{"X-API-Key": "trk_00000000_" + "a" * 43})
        assert bad_key.status_code == 401, bad_key.text


def test_an_anonymous_client_over_its_limit_gets_429_whatever_its_body(
    make_api: ApiFactory,
) -> None:
    api = make_api(rate_limit_anonymous="3/minute")
    codes = [send(api, "POST", "/api/v1/tasks", b"{not json").status_code for _ in range(5)]
    assert codes == [401, 401, 401, 429, 429]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_a_role_too_low_gets_403_before_its_body_is_read(api: Api, method: str, path: str) -> None:
    response = send(api, method, path, b"{not json", **api.auth("reader"))
    assert response.status_code == 403, response.text


def test_a_caller_allowed_still_gets_400_and_422_for_bad_bodies(api: Api) -> None:
    assert (
        send(api, "POST", "/api/v1/tasks", b"{not json", **api.auth("producer")).status_code == 400
    )
    assert (
        send(api, "POST", "/api/v1/tasks", b'{"name": 1}', **api.auth("producer")).status_code
        == 422
    )


# --- defect 5 -----------------------------------------------------------------------------------


def test_two_keys_with_one_name_are_told_apart_in_the_audit_log(api: Api) -> None:
    first, second = api.key("producer", name="ci"), api.key("producer", name="ci")
    ids = []
    for key in (first, second):
        response = api.client.post(
            "/api/v1/tasks", json={"name": "example.echo"}, headers={"X-API-Key": key}
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    actors = {r.target_id: r.actor for r in api.store.list_audit(action="task.create")}
    assert actors == {
        ids[0]: f"apikey:{first.split('_')[1]}",
        ids[1]: f"apikey:{second.split('_')[1]}",
    }
    # and the audit route filters by one exact key
    listed = api.client.get(
        "/api/v1/audit",
        params={"actor": f"apikey:{first.split('_')[1]}"},
        headers=api.auth("admin"),
    ).json()["items"]
    assert [r["target_id"] for r in listed] == [ids[0]]


def test_two_keys_with_one_name_have_their_own_rate_limit_buckets(make_api: ApiFactory) -> None:
    api = make_api(rate_limit_reader="2/minute")
    first, second = api.key("reader", name="dashboard"), api.key("reader", name="dashboard")

    def burst(key: str, n: int) -> list[int]:
        return [
            api.client.get("/api/v1/tasks", headers={"X-API-Key": key}).status_code
            for _ in range(n)
        ]

    assert burst(first, 3) == [200, 200, 429]
    assert burst(second, 2) == [200, 200]


# --- defect 7 -----------------------------------------------------------------------------------


def _token(**claims: Any) -> str:
    body = {"sub": "alice", "role": "reader", **claims}
    return jwt.encode(body, JWT_SECRET, "HS256")


def _status(api: Api, token: str) -> int:
    return int(
        api.client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {token}"}).status_code
    )


TIME_CLAIMS: list[dict[str, Any]] = [
    {"exp": "9999999999"},
    {"exp": str(int(time.time()) + 3600)},
    {"exp": True},
    {"exp": [9999999999]},
    {"exp": float("inf")},
    {"exp": 9999999999, "iat": "0"},
    {"exp": 9999999999, "nbf": "0"},
]


def test_jwt_time_claims_must_be_numbers(api: Api) -> None:
    for claims in TIME_CLAIMS:
        assert _status(api, _token(**claims)) == 401, claims
    # numbers still pass, integer or not
    assert _status(api, _token(exp=int(time.time()) + 60)) == 200
    assert _status(api, _token(exp=time.time() + 60.5)) == 200


def test_the_maximum_jwt_lifetime_refuses_longer_lived_tokens(make_api: ApiFactory) -> None:
    api = make_api(jwt_max_lifetime=3600)
    now = int(time.time())
    assert _status(api, _token(iat=now, exp=now + 3000)) == 200
    assert _status(api, _token(iat=now, exp=now + 7200)) == 401
    # issued long ago, still valid, but meant to live a year: refused
    assert _status(api, _token(iat=now - 3000, exp=now + 365 * 86400)) == 401
    # without iat the lifetime counts from now
    assert _status(api, _token(exp=now + 600)) == 200
    assert _status(api, _token(exp=now + 7200)) == 401
    # without the setting, a long-lived token passes
    assert _status(make_api(), _token(iat=now, exp=now + 365 * 86400)) == 200
