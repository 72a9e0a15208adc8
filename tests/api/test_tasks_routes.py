"""The task routes in-process: create, dedup, batch, list with keyset pagination, get, runs,
cancel; request ids; validation errors with field paths."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from tests.api.conftest import Api
from tests.support.db import Db

pytestmark = pytest.mark.services

ECHO = {"name": "example.echo", "payload": {"hello": "world"}}


def _locs(response_json: dict[str, object]) -> list[list[object]]:
    errors = response_json["errors"]
    assert isinstance(errors, list)
    return [e["loc"] for e in errors]


def test_create_returns_201_with_the_task_its_run_and_location(api: Api) -> None:
    response = api.client.post("/api/v1/tasks", json=ECHO, headers=api.auth("producer"))
    assert response.status_code == 201
    task = response.json()
    assert response.headers["location"] == f"/api/v1/tasks/{task['id']}"
    assert (task["name"], task["queue"], task["status"], task["payload"]) == (
        "example.echo",
        "default",
        "queued",
        {"hello": "world"},
    )
    assert task["latest_run"]["attempt"] == 1
    assert task["latest_run"]["status"] == "queued"
    assert "error_traceback" not in task["latest_run"]


def test_every_field_of_a_create_reaches_the_task(api: Api) -> None:
    body = {
        "name": "example.echo",
        "payload": [1, 2],
        "queue": "high",
        "delay": 60,
        "max_retries": 7,
        "retry": "fixed",
        "retry_params": {"delay": 2},
        "timeout": 9.5,
        "priority": 5,
        "dedup_key": "k",
    }
    task = api.client.post("/api/v1/tasks", json=body, headers=api.auth("producer")).json()
    assert {k: task[k] for k in ("queue", "max_retries", "retry", "timeout", "priority")} == {
        "queue": "high",
        "max_retries": 7,
        "retry": "fixed",
        "timeout": 9.5,
        "priority": 5,
    }
    assert task["retry_params"] == {"delay": 2}
    assert task["dedup_key"] == "k"
    assert task["latest_run"]["available_at"] > task["created_at"]


def test_idempotency_key_returns_the_live_task_with_200(api: Api) -> None:
    headers = {**api.auth("producer"), "Idempotency-Key": "order-42"}
    first = api.client.post("/api/v1/tasks", json=ECHO, headers=headers)
    second = api.client.post("/api/v1/tasks", json=ECHO, headers=headers)
    by_body = api.client.post(
        "/api/v1/tasks", json={**ECHO, "dedup_key": "order-42"}, headers=api.auth("producer")
    )
    assert (first.status_code, second.status_code, by_body.status_code) == (201, 200, 200)
    assert first.json()["id"] == second.json()["id"] == by_body.json()["id"]
    assert first.json()["dedup_key"] == "order-42"
    clash = api.client.post("/api/v1/tasks", json={**ECHO, "dedup_key": "other"}, headers=headers)
    assert clash.status_code == 422
    assert _locs(clash.json()) == [["header", "Idempotency-Key"]]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "example.nope"}, ["body", "name"]),
        ({"name": "not a name"}, ["body", "name"]),
        ({"name": "example.word_count", "payload": {"text": 3}}, ["body", "payload", "text"]),
        ({"name": "example.word_count", "payload": {"txt": "a"}}, ["body", "payload", "text"]),
        ({**ECHO, "delay": 5, "run_at": "2030-01-01T00:00:00Z"}, ["body", "delay"]),
        ({**ECHO, "run_at": "2030-01-01T00:00:00"}, ["body", "run_at"]),
        ({**ECHO, "delay": -1}, ["body", "delay"]),
        ({**ECHO, "queue": "no spaces"}, ["body", "queue"]),
        ({**ECHO, "retry": "fibonacci-ish"}, ["body", "retry"]),
        ({**ECHO, "retry": "fixed", "retry_params": {"dealy": 1}}, ["body", "retry_params"]),
        ({**ECHO, "max_retries": 5000}, ["body", "max_retries"]),
        ({**ECHO, "payload": {"a": "nul\u0000"}}, ["body", "payload", "a"]),
        ({**ECHO, "surprise": 1}, ["body", "surprise"]),
        ({"payload": 1}, ["body", "name"]),
    ],
)
def test_invalid_tasks_get_422_with_the_field_path(
    api: Api, db: Db, body: dict[str, object], loc: list[object]
) -> None:
    response = api.client.post("/api/v1/tasks", json=body, headers=api.auth("producer"))
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"] == "urn:taskrt:problem:validation-error"
    assert any(found[: len(loc)] == loc for found in _locs(problem)), problem
    assert db.scalar("SELECT count(*) FROM tasks") == 0


def test_the_per_task_payload_limit_applies(make_api: Callable[..., Api]) -> None:
    api = make_api(max_payload_bytes=100)
    response = api.client.post(
        "/api/v1/tasks", json={**ECHO, "payload": "x" * 200}, headers=api.auth("producer")
    )
    assert response.status_code == 422
    assert _locs(response.json()) == [["body", "payload"]]
    assert "limit is 100" in response.json()["detail"]


def test_a_body_that_is_not_json_is_a_400_naming_its_position(api: Api) -> None:
    response = api.client.post(
        "/api/v1/tasks",
        content=b'{"name": ',
        headers={**api.auth("producer"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400  # as documented: the body could not be read
    assert "at character 9" in response.json()["detail"]


def test_batch_creates_all_in_order(api: Api, db: Db) -> None:
    body = {"tasks": [ECHO, {**ECHO, "queue": "high"}, {"name": "example.sleep"}]}
    response = api.client.post("/api/v1/tasks/batch", json=body, headers=api.auth("producer"))
    assert response.status_code == 201
    items = response.json()["items"]
    assert [(i["name"], i["queue"], i["created"]) for i in items] == [
        ("example.echo", "default", True),
        ("example.echo", "high", True),
        ("example.sleep", "default", True),
    ]
    assert db.scalar("SELECT count(*) FROM tasks") == 3
    again = api.client.post(
        "/api/v1/tasks/batch",
        json={"tasks": [{**ECHO, "dedup_key": "a"}]},
        headers=api.auth("producer"),
    )
    repeat = api.client.post(
        "/api/v1/tasks/batch",
        json={"tasks": [{**ECHO, "dedup_key": "a"}]},
        headers=api.auth("producer"),
    )
    assert (again.status_code, repeat.status_code) == (201, 200)
    assert repeat.json()["items"][0]["created"] is False


def test_batch_is_all_or_nothing_with_per_item_errors(api: Api, db: Db) -> None:
    body = {
        "tasks": [
            ECHO,
            {"name": "example.word_count", "payload": {"text": 1}},
            ECHO,
            {"name": "example.nope"},
            {**ECHO, "delay": 1, "run_at": "2030-01-01T00:00:00Z"},
            {**ECHO, "payload": "\u0000"},
            {"name": "example.word_count", "payload": {"text": "ok"}, "retry": "nope"},
        ]
    }
    response = api.client.post("/api/v1/tasks/batch", json=body, headers=api.auth("producer"))
    assert response.status_code == 422
    locs = _locs(response.json())
    assert ["body", "tasks", 1, "payload", "text"] in locs
    assert ["body", "tasks", 3, "name"] in locs
    assert ["body", "tasks", 4, "delay"] in locs
    assert ["body", "tasks", 5, "payload"] in locs
    assert ["body", "tasks", 6, "retry"] in locs
    assert not any(loc[2] in (0, 2) for loc in locs)
    assert db.scalar("SELECT count(*) FROM tasks") == 0
    assert db.scalar("SELECT count(*) FROM audit_log") == 0


def test_batch_of_one_invalid_task_names_index_zero(api: Api) -> None:
    response = api.client.post(
        "/api/v1/tasks/batch",
        json={"tasks": [{"name": "example.word_count", "payload": {}}]},
        headers=api.auth("producer"),
    )
    assert response.status_code == 422
    assert _locs(response.json())[0][:3] == ["body", "tasks", 0]


def test_batch_size_is_bounded(api: Api) -> None:
    too_many = {"tasks": [{"name": "example.echo"}] * 1001}
    empty: dict[str, list[object]] = {"tasks": []}
    for body in (too_many, empty):
        response = api.client.post("/api/v1/tasks/batch", json=body, headers=api.auth("producer"))
        assert response.status_code == 422
        assert _locs(response.json()) == [["body", "tasks"]]
    full = api.client.post(
        "/api/v1/tasks/batch",
        json={"tasks": [{"name": "example.echo"}] * 1000},
        headers=api.auth("producer"),
    )
    assert full.status_code == 201
    assert len(full.json()["items"]) == 1000


def _create(api: Api, n: int, **fields: object) -> list[str]:
    body = {"tasks": [{**ECHO, **fields} for _ in range(n)]}
    response = api.client.post("/api/v1/tasks/batch", json=body, headers=api.auth("producer"))
    return [item["id"] for item in response.json()["items"]]


def test_list_pages_newest_first_without_gaps_or_repeats(api: Api) -> None:
    ids = _create(api, 7)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/api/v1/tasks", params=params, headers=api.auth("reader")).json()
        seen += [t["id"] for t in page["items"]]
        pages += 1
        assert all(t["latest_run"]["attempt"] == 1 for t in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))


def test_list_filters_by_status_queue_and_name(api: Api) -> None:
    high = _create(api, 2, queue="high")
    _create(api, 1)
    sleeper = api.client.post(
        "/api/v1/tasks", json={"name": "example.sleep"}, headers=api.auth("producer")
    ).json()["id"]
    api.client.post(f"/api/v1/tasks/{high[0]}/cancel", headers=api.auth("producer"))

    def ids(**params: str) -> set[str]:
        page = api.client.get("/api/v1/tasks", params=params, headers=api.auth("reader"))
        assert page.status_code == 200, page.text
        return {t["id"] for t in page.json()["items"]}

    assert ids(queue="high") == set(high)
    assert ids(queue="high", status="queued") == {high[1]}
    assert ids(status="cancelled") == {high[0]}
    assert ids(name="example.sleep") == {sleeper}
    assert (
        api.client.get(
            "/api/v1/tasks", params={"status": "sleeping"}, headers=api.auth("reader")
        ).status_code
        == 422
    )


@pytest.mark.parametrize("cursor", ["garbage", "YTox", "dDpub3QtYS11dWlk"])
def test_a_cursor_the_api_did_not_hand_out_is_a_422(api: Api, cursor: str) -> None:
    response = api.client.get(
        "/api/v1/tasks", params={"cursor": cursor}, headers=api.auth("reader")
    )
    assert response.status_code == 422
    assert _locs(response.json()) == [["query", "cursor"]]


def test_get_and_runs_and_not_found(api: Api) -> None:
    (task_id,) = _create(api, 1)
    task = api.client.get(f"/api/v1/tasks/{task_id}", headers=api.auth("reader")).json()
    assert task["id"] == task_id
    runs = api.client.get(f"/api/v1/tasks/{task_id}/runs", headers=api.auth("reader")).json()
    assert [r["attempt"] for r in runs["items"]] == [1]
    missing = api.client.get(f"/api/v1/tasks/{uuid.uuid4()}", headers=api.auth("reader"))
    assert missing.status_code == 404
    assert missing.json()["type"] == "urn:taskrt:problem:not-found"
    assert api.client.get("/api/v1/tasks/nope", headers=api.auth("reader")).status_code == 422


def test_cancel_then_cancel_again_is_a_conflict(api: Api) -> None:
    (task_id,) = _create(api, 1)
    first = api.client.post(f"/api/v1/tasks/{task_id}/cancel", headers=api.auth("producer"))
    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert first.json()["latest_run"]["status"] == "cancelled"
    again = api.client.post(f"/api/v1/tasks/{task_id}/cancel", headers=api.auth("producer"))
    assert again.status_code == 409
    assert "already cancelled" in again.json()["detail"]
    unknown = api.client.post(f"/api/v1/tasks/{uuid.uuid4()}/cancel", headers=api.auth("producer"))
    assert unknown.status_code == 404


def test_request_id_is_returned_and_stored_as_the_trace_id(api: Api) -> None:
    given = api.client.post(
        "/api/v1/tasks", json=ECHO, headers={**api.auth("producer"), "X-Request-ID": "abc-123"}
    )
    assert given.headers["x-request-id"] == "abc-123"
    assert given.json()["trace_id"] == "abc-123"
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    traced = api.client.post(
        "/api/v1/tasks",
        json=ECHO,
        headers={**api.auth("producer"), "traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
    )
    assert traced.headers["x-request-id"] == trace
    assert traced.json()["trace_id"] == trace
    made_up = api.client.post("/api/v1/tasks", json=ECHO, headers=api.auth("producer"))
    assert len(made_up.headers["x-request-id"]) == 32
    assert made_up.json()["trace_id"] == made_up.headers["x-request-id"]
    rows = {r.target_id: r.request_id for r in api.store.list_audit(action="task.create")}
    assert rows[given.json()["id"]] == "abc-123"
    assert rows[traced.json()["id"]] == trace


def test_a_malformed_request_id_is_replaced_not_echoed(api: Api) -> None:
    for bad in ("x" * 200, "has space", "<script>"):
        response = api.client.get("/healthz", headers={"X-Request-ID": bad})
        assert response.headers["x-request-id"] != bad
    zero = api.client.get("/healthz", headers={"traceparent": f"00-{'0' * 32}-{'1' * 16}-01"})
    assert zero.headers["x-request-id"] != "0" * 32
    problem = api.client.get("/api/v1/tasks", headers={"X-Request-ID": "rid-1"})
    assert problem.json()["request_id"] == "rid-1"
