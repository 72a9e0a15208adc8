"""``/api/v1/schedules``: create, read, list, change and delete schedules, their fires and the
preview of their next fire times; bad cron expressions and zones are 422s naming the field."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from taskrt.api.paging import encode_cursor
from taskrt.schedule_service import ScheduleService
from tests.api.conftest import Api
from tests.support.db import Db
from tests.support.procs import wait_for

pytestmark = pytest.mark.services

URL = "/api/v1/schedules"
ZONE_BERLIN = ZoneInfo("Europe/Berlin")
ECHO_EVERY_5_MIN = {"cron": "*/5 * * * *", "task": "example.echo"}


def _create(api: Api, **fields: Any) -> dict[str, Any]:
    response = api.client.post(URL, json={**ECHO_EVERY_5_MIN, **fields}, headers=api.auth("admin"))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_create_then_read_it_back(api: Api) -> None:
    response = api.client.post(
        URL,
        json={
            "cron": "30 2 * * *",
            "timezone": "Europe/Berlin",
            "task": "example.word_count",
            "payload": {"text": "nightly report"},
            "queue": "normal",
            "misfire_policy": "all",
            "name": "nightly",
            "max_retries": 7,
            "retry": "fixed",
            "retry_params": {"delay": 2},
            "timeout": 30,
            "priority": 5,
        },
        headers=api.auth("admin"),
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert response.headers["location"] == f"{URL}/{created['id']}"
    assert {k: created[k] for k in ("cron", "timezone", "task", "queue", "misfire_policy")} == {
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "task": "example.word_count",
        "queue": "normal",
        "misfire_policy": "all",
    }
    # the payload as the task type's model validated it (with its defaults filled in)
    assert (created["name"], created["enabled"], created["payload"]["text"]) == (
        "nightly",
        True,
        "nightly report",
    )
    assert (created["max_retries"], created["retry"], created["retry_params"]) == (
        7,
        "fixed",
        {"delay": 2},
    )
    assert (created["timeout"], created["priority"], created["last_triggered_at"]) == (30, 5, None)
    next_fire = _at(created["next_fire_at"])
    assert next_fire.astimezone(ZONE_BERLIN).strftime("%M") in ("30", "00")  # 03:00 after a gap
    fetched = api.client.get(f"{URL}/{created['id']}", headers=api.auth("reader"))
    assert fetched.json() == created


def test_defaults_come_from_the_task_type(api: Api) -> None:
    created = _create(api)
    assert (created["timezone"], created["misfire_policy"], created["enabled"]) == (
        "UTC",
        "coalesce",
        True,
    )
    assert (created["queue"], created["retry"], created["payload"]) == (
        "default",
        "exponential",
        None,
    )


@pytest.mark.parametrize(
    ("fields", "loc", "detail"),
    [
        ({"cron": "61 * * * *"}, ["body", "cron"], "invalid cron expression '61 * * * *'"),
        ({"cron": "* * *"}, ["body", "cron"], "give 5 fields"),
        ({"cron": "0 0 31 2 *"}, ["body", "cron"], "never fires"),
        ({"timezone": "Mars/Olympus"}, ["body", "timezone"], "unknown time zone 'Mars/Olympus'"),
        ({"timezone": "America"}, ["body", "timezone"], "unknown time zone 'America'"),
        ({"task": "example.nope"}, ["body", "task"], "unknown task 'example.nope'"),
        (
            {"task": "example.word_count", "payload": {"text": 3}},
            ["body", "payload", "text"],
            "was refused",
        ),
        ({"misfire_policy": "sometimes"}, ["body", "misfire_policy"], "misfire_policy"),
        ({"retry": "nope"}, ["body", "retry"], "unknown retry strategy 'nope'"),
        ({"payload": {"a": "nul\u0000"}}, ["body", "payload", "a"], "NUL"),
    ],
)
def test_bad_input_is_a_422_naming_the_field_and_stores_nothing(
    api: Api, db: Db, fields: dict[str, Any], loc: list[str], detail: str
) -> None:
    response = api.client.post(URL, json={**ECHO_EVERY_5_MIN, **fields}, headers=api.auth("admin"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert loc in [e["loc"] for e in problem["errors"]]
    assert detail in problem["detail"]
    assert db.scalar("SELECT count(*) FROM schedules") == 0
    assert db.scalar("SELECT count(*) FROM tasks") == 0
    assert db.scalar("SELECT count(*) FROM audit_log WHERE action LIKE 'schedule.%'") == 0


def test_the_list_is_keyset_paginated_oldest_first(api: Api) -> None:
    ids = [_create(api, name=f"s{i}")["id"] for i in range(5)]
    reader = api.auth("reader")
    first = api.client.get(URL, params={"limit": 2}, headers=reader).json()
    assert [s["id"] for s in first["items"]] == ids[:2]
    second = api.client.get(
        URL, params={"limit": 2, "cursor": first["next_cursor"]}, headers=reader
    ).json()
    assert [s["id"] for s in second["items"]] == ids[2:4]
    last = api.client.get(URL, params={"cursor": second["next_cursor"]}, headers=reader).json()
    assert ([s["id"] for s in last["items"]], last["next_cursor"]) == (ids[4:], None)
    task_cursor = encode_cursor("t", ids[0])  # a cursor of the task list is not one of ours
    wrong = api.client.get(URL, params={"cursor": task_cursor}, headers=reader)
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["loc"] == ["query", "cursor"]


def test_patch_changes_what_it_is_given(api: Api) -> None:
    created = _create(api, name="before", payload={"n": 1})
    url, admin = f"{URL}/{created['id']}", api.auth("admin")

    moved = api.client.patch(
        url, json={"cron": "0 12 * * *", "timezone": "Asia/Kolkata"}, headers=admin
    ).json()
    assert (moved["cron"], moved["timezone"], moved["name"]) == (
        "0 12 * * *",
        "Asia/Kolkata",
        "before",
    )
    noon_kolkata = _at(moved["next_fire_at"])
    assert (noon_kolkata.hour, noon_kolkata.minute) == (6, 30)  # 12:00 IST is 06:30 UTC

    disabled = api.client.patch(url, json={"enabled": False}, headers=admin).json()
    assert disabled["enabled"] is False
    changed = api.client.patch(
        url,
        json={"payload": None, "queue": "low", "name": "after", "misfire_policy": "skip"},
        headers=admin,
    ).json()
    assert (changed["payload"], changed["queue"], changed["name"], changed["misfire_policy"]) == (
        None,
        "low",
        "after",
        "skip",
    )
    assert changed["enabled"] is False
    assert api.client.patch(url, json={"enabled": True}, headers=admin).json()["enabled"] is True


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({}, ["body"]),
        ({"cron": None}, ["body", "cron"]),
        ({"enabled": None}, ["body", "enabled"]),
        ({"cron": "* * * * * * *"}, ["body", "cron"]),
        ({"timezone": "Nowhere/Special"}, ["body", "timezone"]),
        ({"misfire_policy": "never"}, ["body", "misfire_policy"]),
        ({"task": "example.sleep"}, ["body", "task"]),
        ({"payload": "not an object"}, ["body", "payload"]),
        ({"max_retries": -1}, ["body", "max_retries"]),
        ({"retry": "nope"}, ["body", "retry"]),
        ({"retry": None}, ["body", "retry"]),
        ({"retry_params": {"delay": -5}}, ["body", "retry_params", "delay"]),
    ],
)
def test_a_bad_patch_is_a_422_and_changes_nothing(
    api: Api, db: Db, body: dict[str, Any], loc: list[str | int]
) -> None:
    created = _create(api, task="example.word_count", payload={"text": "a b"})
    response = api.client.patch(f"{URL}/{created['id']}", json=body, headers=api.auth("admin"))
    assert response.status_code == 422, response.text
    assert loc in [e["loc"] for e in response.json()["errors"]]
    assert api.client.get(f"{URL}/{created['id']}", headers=api.auth("reader")).json() == created
    assert db.scalar("SELECT count(*) FROM audit_log WHERE action <> 'schedule.create'") == 0


def test_patched_retry_settings_reach_the_tasks_fired_afterwards(api: Api) -> None:
    created = _create(api, cron="* * * * * *")  # every second
    url, admin = f"{URL}/{created['id']}", api.auth("admin")
    changed = api.client.patch(
        url, json={"max_retries": 7, "retry": "fixed", "retry_params": {"delay": 3}}, headers=admin
    ).json()
    assert (changed["max_retries"], changed["retry"], changed["retry_params"]) == (
        7,
        "fixed",
        {"delay": 3},
    )
    # new parameters alone keep the strategy; a new strategy alone starts from no parameters
    params_only = api.client.patch(url, json={"retry_params": {"delay": 9}}, headers=admin).json()
    assert (params_only["retry"], params_only["retry_params"]) == ("fixed", {"delay": 9})
    assert params_only["max_retries"] == 7
    task_id = _fire_once(api, uuid.UUID(created["id"]))
    task = api.client.get(f"/api/v1/tasks/{task_id}", headers=admin).json()
    assert (task["max_retries"], task["retry"], task["retry_params"]) == (7, "fixed", {"delay": 9})
    strategy_only = api.client.patch(url, json={"retry": "none"}, headers=admin).json()
    assert (strategy_only["retry"], strategy_only["retry_params"]) == ("none", {})


def test_delete_removes_the_schedule_but_not_the_tasks_it_fired(api: Api, db: Db) -> None:
    created = _create(api, cron="* * * * * *")  # every second
    schedule_id = uuid.UUID(created["id"])
    fired = _fire_once(api, schedule_id)
    admin = api.auth("admin")
    response = api.client.delete(f"{URL}/{schedule_id}", headers=admin)
    assert (response.status_code, response.content) == (204, b"")
    assert api.client.get(f"{URL}/{schedule_id}", headers=admin).status_code == 404
    assert api.client.delete(f"{URL}/{schedule_id}", headers=admin).status_code == 404
    assert api.client.get(f"/api/v1/tasks/{fired}", headers=admin).status_code == 200
    assert db.scalar("SELECT count(*) FROM schedule_fires") == 0


def _fire_once(api: Api, schedule_id: uuid.UUID) -> str:
    """Let a scheduler tick fire the every-second schedule; the id of the task it made."""
    service = ScheduleService(api.service)

    def fired() -> list[str]:
        return [str(t) for s, _, t in service.fire_due().fired if s == schedule_id]

    tasks: list[str] = wait_for(fired, 10, interval=0.2, message="the schedule to fire")
    return tasks[0]


def test_fires_list_what_the_scheduler_fired(api: Api) -> None:
    created = _create(api, cron="* * * * * *", payload={"from": "schedule"})
    schedule_id = uuid.UUID(created["id"])
    task_id = _fire_once(api, schedule_id)
    reader = api.auth("reader")
    fires = api.client.get(f"{URL}/{schedule_id}/fires", headers=reader).json()["items"]
    assert [f["task_id"] for f in fires] == [task_id]
    (fire,) = fires
    assert 0 <= fire["lag_seconds"] < 5
    assert _at(fire["fire_at"]).microsecond == 0
    task = api.client.get(f"/api/v1/tasks/{task_id}", headers=reader).json()
    assert (task["name"], task["kind"], task["payload"]) == (
        "example.echo",
        "immediate",
        {"from": "schedule"},
    )
    again = api.client.get(f"{URL}/{schedule_id}", headers=reader).json()
    assert again["last_triggered_at"] == fire["fire_at"]
    assert (
        api.client.get(
            f"{URL}/{schedule_id}/fires", params={"limit": 0}, headers=reader
        ).status_code
        == 422
    )


def test_preview_gives_each_time_on_the_local_clock_and_in_utc(api: Api) -> None:
    created = _create(api, cron="30 2 * * *", timezone="Europe/Berlin")
    reader = api.auth("reader")
    preview = api.client.get(
        f"{URL}/{created['id']}/next", params={"count": 7}, headers=reader
    ).json()
    assert (preview["schedule_id"], preview["cron"], preview["timezone"], preview["enabled"]) == (
        created["id"],
        "30 2 * * *",
        "Europe/Berlin",
        True,
    )
    items = preview["items"]
    assert len(items) == 7
    assert _at(items[0]["utc"]) == _at(created["next_fire_at"])
    for item in items:
        local, utc = datetime.fromisoformat(item["local"]), _at(item["utc"])
        assert local == utc
        assert local.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
        assert local.strftime("%H:%M") in ("02:30", "03:00")  # 03:00 when 02:30 does not exist
    utcs = [_at(i["utc"]) for i in items]
    assert utcs == sorted(utcs)
    gaps = [b - a for a, b in pairwise(utcs)]
    assert all(timedelta(hours=23) <= gap <= timedelta(hours=25) for gap in gaps)


def test_preview_count_is_bounded(api: Api) -> None:
    created = _create(api)
    reader = api.auth("reader")
    for count, status in ((1, 200), (100, 200), (0, 422), (101, 422)):
        response = api.client.get(
            f"{URL}/{created['id']}/next", params={"count": count}, headers=reader
        )
        assert response.status_code == status, count
    default = api.client.get(f"{URL}/{created['id']}/next", headers=reader).json()
    assert len(default["items"]) == 5


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("GET", "", None),
        ("PATCH", "", {"enabled": False}),
        ("DELETE", "", None),
        ("GET", "/fires", None),
        ("GET", "/next", None),
    ],
)
def test_an_unknown_schedule_is_a_404(api: Api, method: str, suffix: str, body: Any) -> None:
    response = api.client.request(
        method, f"{URL}/{uuid.uuid4()}{suffix}", json=body, headers=api.auth("admin")
    )
    assert response.status_code == 404
    assert response.json()["detail"].startswith("no schedule with id")


def test_a_schedule_created_over_http_is_what_the_cli_shows(api: Api) -> None:
    created = _create(api, name="same")
    record = ScheduleService(api.service).get(uuid.UUID(created["id"]))
    assert (record.name, record.cron, record.task_name) == ("same", "*/5 * * * *", "example.echo")
