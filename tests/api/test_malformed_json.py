"""A body that is not JSON gets 400 ``bad-request``, as the docs promise; JSON of the wrong
shape gets 422 with the fields named."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.services

ROUTES = [
    "/api/v1/tasks",
    "/api/v1/tasks/batch",
    "/api/v1/schedules",
    "/api/v1/queues/default/dlq/replay",
]


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("body", [b"{not json", b"[1,", b"\xff\xfe", b'{"name": "a"} trailing'])
def test_a_body_that_is_not_json_is_a_400(api: Api, path: str, body: bytes) -> None:
    headers = {**api.auth("admin"), "content-type": "application/json"}
    response = api.client.post(path, content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith(":bad-request")
    assert "not valid JSON" in problem["detail"]


def test_json_of_the_wrong_shape_is_still_a_422(api: Api) -> None:
    response = api.client.post("/api/v1/tasks", json={"payload": {}}, headers=api.auth("admin"))
    assert response.status_code == 422
    assert ["body", "name"] in [e["loc"] for e in response.json()["errors"]]
