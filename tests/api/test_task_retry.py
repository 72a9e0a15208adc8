"""``POST /api/v1/tasks/{id}/retry``: a finished task runs again, with a new run."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.services

ECHO = {"name": "example.echo", "payload": {"hello": "world"}}


def test_a_cancelled_task_is_queued_again_with_a_new_run(api: Api) -> None:
    producer = api.auth("producer")
    task_id = api.client.post("/api/v1/tasks", json=ECHO, headers=producer).json()["id"]
    assert api.client.post(f"/api/v1/tasks/{task_id}/cancel", headers=producer).status_code == 200

    response = api.client.post(f"/api/v1/tasks/{task_id}/retry", headers=producer)
    assert response.status_code == 200, response.text
    task = response.json()
    assert task["status"] == "queued"
    assert task["latest_run"]["attempt"] == 2
    assert task["latest_run"]["status"] == "queued"
    runs = api.client.get(f"/api/v1/tasks/{task_id}/runs", headers=producer).json()["items"]
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "cancelled"), (2, "queued")]

    again = api.client.post(f"/api/v1/tasks/{task_id}/retry", headers=producer)
    assert again.status_code == 409
    assert "only a finished task" in again.json()["detail"]
