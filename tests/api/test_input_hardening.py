"""Input no store can hold or no read can return is refused with a 4xx naming the field, and
leaves nothing behind (issue 12, defects 2 and 3): JSON nested too deep, lone surrogates,
``run_at`` pushed out of range by its offset, delays past any date, malformed cursors and
identities longer than the audit log's actor column."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.api.conftest import Api, ApiFactory

pytestmark = pytest.mark.services


def nested(depth: int, leaf: Any = 1) -> Any:
    """``leaf`` inside ``depth`` objects and arrays, alternating."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def raw(value: Any) -> bytes:
    """JSON text of ``value``; lone surrogates become ``\\ud800`` escapes, as a client sends."""
    return json.dumps(value).encode("ascii")


def rows(api: Api) -> dict[str, int]:
    """How many rows each table the API writes holds."""
    import sqlalchemy as sa

    with api.store.engine.connect() as conn:
        return {
            table: conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in ("tasks", "task_runs", "schedules", "audit_log", "outbox")
        }


def post(api: Api, path: str, body: Any, method: str = "POST", **headers: str) -> Any:
    return api.client.request(
        method,
        path,
        content=raw(body),
        headers={**api.auth("admin"), "content-type": "application/json", **headers},
    )


def assert_refused(response: Any, loc: list[Any], status: int = 422) -> None:
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["status"] == status
    if loc:
        locs = [e["loc"][: len(loc)] for e in problem.get("errors", [])]
        assert loc in locs, problem


def schedule(api: Api) -> str:
    created = post(api, "/api/v1/schedules", {"cron": "0 * * * *", "task": "example.echo"})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


# --- defect 2: nesting --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "loc"),
    [
        ("/api/v1/tasks", {"name": "example.echo", "payload": nested(65)}, ["body", "payload"]),
        (
            "/api/v1/tasks",
            {"name": "example.echo", "payload": nested(300)},
            ["body", "payload"],
        ),
        (
            "/api/v1/tasks",
            {"name": "example.echo", "retry": "fixed", "retry_params": {"x": nested(70)}},
            ["body", "retry_params"],
        ),
        (
            "/api/v1/tasks/batch",
            {"tasks": [{"name": "example.echo"}, {"name": "example.echo", "payload": nested(65)}]},
            ["body", "tasks", 1, "payload"],
        ),
        (
            "/api/v1/schedules",
            {"cron": "* * * * *", "task": "example.echo", "payload": nested(65)},
            ["body", "payload"],
        ),
    ],
    ids=["task-65", "task-300", "retry-params", "batch", "schedule"],
)
def test_json_nested_too_deep_is_a_422_and_stores_nothing(
    api: Api, path: str, body: Any, loc: list[Any]
) -> None:
    before = rows(api)
    assert_refused(post(api, path, body), loc)
    assert rows(api) == before
    assert "TASKRT_MAX_JSON_DEPTH" in post(api, path, body).text
    # nested past what the JSON parser itself takes: refused, not a 500
    deepest = b'{"payload": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = api.client.post(
        path, content=deepest, headers={**api.auth("admin"), "content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert rows(api) == before


def test_patching_a_schedule_with_a_too_deep_payload_is_a_422_and_changes_nothing(api: Api) -> None:
    schedule_id = schedule(api)
    before = rows(api)
    response = post(api, f"/api/v1/schedules/{schedule_id}", {"payload": nested(65)}, "PATCH")
    assert_refused(response, ["body", "payload"])
    assert rows(api) == before
    assert (
        api.client.get(f"/api/v1/schedules/{schedule_id}", headers=api.auth("admin")).json()[
            "payload"
        ]
        is None
    )


def _deepest_allowed_is_stored_and_read(api: Api) -> None:
    deepest = nested(64)
    created = post(api, "/api/v1/tasks", {"name": "example.echo", "payload": deepest})
    assert created.status_code == 201, created.text
    sched = post(
        api, "/api/v1/schedules", {"cron": "0 * * * *", "task": "example.echo", "payload": deepest}
    )
    assert sched.status_code == 201, sched.text
    admin = api.auth("admin")
    task_id = created.json()["id"]
    for path in (
        f"/api/v1/tasks/{task_id}",
        "/api/v1/tasks?kind=all",
        f"/api/v1/schedules/{sched.json()['id']}",
        "/api/v1/schedules",
        "/api/v1/audit",
    ):
        assert api.client.get(path, headers=admin).status_code == 200, path
    assert api.client.get(f"/api/v1/tasks/{task_id}", headers=admin).json()["payload"] == deepest


def test_the_depth_limit_is_a_setting_and_the_deepest_allowed_reads_back(
    make_api: ApiFactory,
) -> None:
    api = make_api(max_json_depth=3)
    assert_refused(post(api, "/api/v1/tasks", {"name": "example.echo", "payload": nested(4)}), [])
    created = post(api, "/api/v1/tasks", {"name": "example.echo", "payload": nested(3)})
    assert created.status_code == 201
    _deepest_allowed_is_stored_and_read(make_api())


# --- defect 3: lone surrogates, dates, cursors, identities ---------------------------------------

LONE = "\ud800"


SURROGATE_CASES: list[tuple[str, Any, list[Any]]] = [
    ("/api/v1/tasks", {"name": "example.echo", "payload": f"a{LONE}"}, ["body", "payload"]),
    (
        "/api/v1/tasks",
        {"name": "example.echo", "payload": {f"key{LONE}": 1}},
        ["body", "payload"],
    ),
    ("/api/v1/tasks", {"name": "example.echo", "dedup_key": LONE}, ["body", "dedup_key"]),
    ("/api/v1/tasks", {"name": f"example.echo{LONE}"}, ["body", "name"]),
    (
        "/api/v1/tasks/batch",
        {"tasks": [{"name": "example.echo", "payload": [LONE]}]},
        ["body", "tasks", 0, "payload"],
    ),
    (
        "/api/v1/schedules",
        {"cron": "* * * * *", "task": "example.echo", "name": LONE},
        ["body", "name"],
    ),
    (
        "/api/v1/schedules",
        {"cron": "* * * * *", "task": "example.echo", "timezone": f"Europe/{LONE}"},
        ["body", "timezone"],
    ),
    (
        "/api/v1/schedules",
        {"cron": "* * * * *", "task": "example.echo", "payload": {"a": LONE}},
        ["body", "payload"],
    ),
]


def test_lone_surrogates_are_a_422_naming_the_field(api: Api) -> None:
    before = rows(api)
    for path, body, loc in SURROGATE_CASES:
        assert_refused(post(api, path, body), loc)
    assert rows(api) == before
    # an error message quoting the client's input stays a readable problem
    response = post(api, "/api/v1/tasks", {"name": "example.echo", f"extra{LONE}": 1})
    assert response.status_code == 422, response.text


def test_patching_a_schedule_with_lone_surrogates_is_a_422(api: Api) -> None:
    schedule_id = schedule(api)
    before = rows(api)
    for body, loc in (({"name": LONE}, ["body", "name"]), ({"payload": LONE}, ["body", "payload"])):
        response = post(api, f"/api/v1/schedules/{schedule_id}", body, "PATCH")
        assert_refused(response, loc)
    assert rows(api) == before


@pytest.mark.parametrize(
    "run_at",
    ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-01:00"],
)
def test_run_at_out_of_range_once_in_utc_is_a_422(api: Api, run_at: str) -> None:
    before = rows(api)
    body = {"name": "example.echo", "run_at": run_at}
    assert_refused(post(api, "/api/v1/tasks", body), ["body", "run_at"])
    assert_refused(
        post(api, "/api/v1/tasks/batch", {"tasks": [body]}), ["body", "tasks", 0, "run_at"]
    )
    # and a delay past any date a store can hold
    for delay in (1e300, 1e12):
        late = {"name": "example.echo", "delay": delay}
        assert_refused(post(api, "/api/v1/tasks", late), ["body", "delay"])
    assert rows(api) == before


def _cursor(kind: str, value: str) -> str:
    from taskrt.api.paging import encode_cursor

    return encode_cursor(kind, value)


CURSOR_LISTS = ["/api/v1/tasks", "/api/v1/queues/default/dlq", "/api/v1/schedules", "/api/v1/audit"]


def test_a_malformed_cursor_is_a_422_on_every_list(api: Api) -> None:
    cursors = [
        _cursor("a", "\u00b2"),
        _cursor("a", "\u0661\u0662"),
        _cursor("t", "\u00b2"),
        _cursor("s", "0" * 40),
        "A",
        "AAAA",
        "_-_-",
        "x" * 200,
    ]
    for path in CURSOR_LISTS:
        for cursor in cursors:
            response = api.client.get(path, params={"cursor": cursor}, headers=api.auth("admin"))
            assert_refused(response, ["query", "cursor"])


def test_a_jwt_subject_longer_than_the_audit_column_is_refused_and_stores_nothing(
    api: Api,
) -> None:
    before = rows(api)
    for subject in ("s" * 300, f"user{LONE}"):
        token = api.jwt("producer", sub=subject)
        response = api.client.post(
            "/api/v1/tasks",
            json={"name": "example.echo"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401, response.text
    assert rows(api) == before
    # a subject that fits is recorded whole
    token = api.jwt("producer", sub="s" * 190)
    response = api.client.post(
        "/api/v1/tasks", json={"name": "example.echo"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201, response.text


def test_a_key_with_the_longest_name_can_write(api: Api) -> None:
    key = api.key("producer", name="n" * 200)
    response = api.client.post(
        "/api/v1/tasks", json={"name": "example.echo"}, headers={"X-API-Key": key}
    )
    assert response.status_code == 201, response.text
    actors = [r.actor for r in api.store.list_audit(action="task.create")]
    assert actors == [f"apikey:{key.split('_')[1]}"]


def test_a_key_name_no_store_can_hold_is_refused(api: Api) -> None:
    from taskrt.exceptions import ValidationError

    before = rows(api)
    for name in (f"bad{LONE}", "nul\x00", "n" * 201):
        with pytest.raises(ValidationError) as info:
            api.key("producer", name=name)
        assert info.value.errors[0]["loc"] == ["name"]
    assert rows(api) == before
