"""``GET /api/v1/tasks`` lists tasks to run; the templates cron schedules fire only when asked."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.services


def test_schedule_templates_are_listed_only_when_asked_for(api: Api) -> None:
    admin = api.auth("admin")
    schedule = {"cron": "*/5 * * * *", "task": "example.echo"}
    assert api.client.post("/api/v1/schedules", json=schedule, headers=admin).status_code == 201
    created = api.client.post("/api/v1/tasks", json={"name": "example.echo"}, headers=admin)
    task_id = created.json()["id"]

    def kinds(**params: str) -> list[tuple[str, str]]:
        response = api.client.get("/api/v1/tasks", params=params, headers=admin)
        assert response.status_code == 200, response.text
        return [(t["kind"], t["id"]) for t in response.json()["items"]]

    assert kinds() == [("immediate", task_id)]
    assert kinds(kind="immediate") == [("immediate", task_id)]
    (template,) = kinds(kind="scheduled")
    assert template[0] == "scheduled"
    assert sorted(kinds(kind="all")) == sorted([("immediate", task_id), template])
    assert api.client.get("/api/v1/tasks", params={"kind": "x"}, headers=admin).status_code == 422
