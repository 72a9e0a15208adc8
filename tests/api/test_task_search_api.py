"""``GET /api/v1/tasks`` searches: every filter over HTTP, pages that keep their filters, and a
422 naming the parameter for each kind of bad filter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from taskrt.db.engine import create_engine
from tests.api.conftest import Api
from tests.support.searchdata import T0, add_task

pytestmark = pytest.mark.services

DAY = timedelta(days=1)


@pytest.fixture
def engine(pg_url: str) -> Iterator[Engine]:
    handle = create_engine(pg_url)
    yield handle
    handle.dispose()


def listed(api: Api, params: Any, *, limit: int = 500) -> list[str]:
    response = api.client.get(
        "/api/v1/tasks", params={**dict(params), "limit": limit}, headers=api.auth("reader")
    )
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()["items"]]


def newest_first(*task_ids: uuid.UUID) -> list[str]:
    return [str(t) for t in sorted(task_ids, reverse=True)]


def test_each_filter_over_http(api: Api, engine: Engine) -> None:
    early = add_task(engine, created=T0, payload={"customer_id": 42, "region": {"code": "eu"}})
    failed = add_task(
        engine,
        created=T0 + DAY,
        status="failed",
        queue="mail",
        name="mail.send",
        finished=T0 + 2 * DAY,
        errors=("ValueError", "myapp.SmtpError"),
        payload={"customer_id": 42, "region": {"code": "us"}},
    )
    late = add_task(
        engine,
        created=T0 + 2 * DAY,
        status="completed",
        finished=T0 + 3 * DAY,
        dedup_key="order-7",
        payload={"customer_id": "42"},
    )

    assert listed(api, {}) == newest_first(early, failed, late)
    assert listed(api, {"status": "failed"}) == newest_first(failed)
    assert listed(api, {"queue": "mail"}) == newest_first(failed)
    assert listed(api, {"name": "mail.send"}) == newest_first(failed)
    assert listed(api, {"error_type": "myapp.SmtpError"}) == newest_first(failed)
    assert listed(api, {"error_type": "ValueError"}) == []
    assert listed(api, {"dedup_key": "order-7"}) == newest_first(late)
    after = (T0 + DAY).isoformat()
    assert listed(api, {"created_after": after}) == newest_first(failed, late)
    assert listed(api, {"created_before": after}) == newest_first(early)
    assert listed(api, {"finished_after": (T0 + 3 * DAY).isoformat()}) == newest_first(late)
    assert listed(api, {"finished_before": (T0 + 3 * DAY).isoformat()}) == newest_first(failed)
    assert listed(api, {"payload": "customer_id:42"}) == newest_first(early, failed)
    assert listed(api, {"payload": 'customer_id:"42"'}) == newest_first(late)
    both = [("payload", "customer_id:42"), ("payload", "region.code:eu")]
    assert listed(api, both) == newest_first(early)
    assert listed(api, [*both, ("status", "failed")]) == []


def test_pages_keep_their_filters(api: Api, engine: Engine) -> None:
    wanted = [
        add_task(engine, created=T0 + timedelta(seconds=s), payload={"batch": 7}) for s in range(5)
    ]
    for s in range(5):
        add_task(engine, created=T0 + timedelta(seconds=s, milliseconds=1), payload={"batch": 8})
    headers = api.auth("reader")

    seen: list[str] = []
    params: dict[str, Any] = {"payload": "batch:7", "limit": 2}
    while True:
        body = api.client.get("/api/v1/tasks", params=params, headers=headers).json()
        seen += [item["id"] for item in body["items"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]

    assert seen == newest_first(*wanted)


@pytest.mark.parametrize(
    ("params", "loc", "detail"),
    [
        ({"payload": "customer_id"}, ["query", "payload"], "has no ':'"),
        ({"payload": "a b:1"}, ["query", "payload"], "is not a payload key path"),
        ({"payload": 'a:{"b": 1}'}, ["query", "payload"], "strings, numbers, booleans and null"),
        ({"payload": "a:1e999"}, ["query", "payload"], "not a finite number"),
        ({"payload": 'a:"\\u0000"'}, ["query", "payload"], "NUL"),
        ({"payload": "a:\x00"}, ["query", "payload"], "NUL"),
        ({"payload": f"a:{2**64}"}, ["query", "payload"], "out of range"),
        ({"created_after": "2026-01-01T00:00:00"}, ["query", "created_after"], None),
        ({"finished_before": "yesterday"}, ["query", "finished_before"], None),
        ({"status": "lost"}, ["query", "status"], None),
        ({"error_type": ""}, ["query", "error_type"], None),
        ([("payload", f"k{n}:1") for n in range(9)], ["query", "payload"], None),
    ],
)
def test_bad_filters_get_a_422_naming_the_parameter(
    api: Api, params: Any, loc: list[str], detail: str | None
) -> None:
    response = api.client.get("/api/v1/tasks", params=params, headers=api.auth("reader"))

    assert response.status_code == 422, response.text
    body = response.json()
    assert [e["loc"][:2] for e in body["errors"]] == [loc], body
    if detail is not None:
        assert detail in body["detail"]


def test_a_bad_filter_without_credentials_is_a_401(api: Api) -> None:
    response = api.client.get("/api/v1/tasks", params={"payload": "nonsense"})

    assert response.status_code == 401
