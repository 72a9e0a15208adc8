"""One error shape (application/problem+json) for every failure, and no stack trace, SQL or
connection detail ever in an answer."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from tests.api.conftest import Api

pytestmark = pytest.mark.services

PROBLEM_KEYS = {"type", "title", "status", "detail", "request_id"}


def _is_problem(response_json: dict[str, object], status: int) -> None:
    assert set(response_json) >= PROBLEM_KEYS
    assert response_json["status"] == status
    assert str(response_json["type"]).startswith("urn:taskrt:problem:")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nowhere", 404),
        ("DELETE", "/api/v1/tasks", 405),
        ("GET", "/api/v1/tasks/not-a-uuid", 422),
        ("GET", "/api/v1/tasks?limit=0", 422),
        ("GET", "/api/v1/tasks/00000000-0000-0000-0000-000000000000", 404),
    ],
)
def test_every_error_is_a_problem(api: Api, method: str, path: str, status: int) -> None:
    response = api.client.request(method, path, headers=api.auth("admin"))
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    _is_problem(response.json(), status)
    assert response.json()["request_id"] == response.headers["x-request-id"]


def test_validation_problems_list_field_paths(api: Api) -> None:
    response = api.client.get(
        "/api/v1/tasks", params={"limit": 0, "status": "x"}, headers=api.auth("reader")
    )
    errors = response.json()["errors"]
    assert {tuple(e["loc"]) for e in errors} == {("query", "limit"), ("query", "status")}
    assert all(e["msg"] for e in errors)


def test_an_unexpected_error_is_a_bare_500_with_the_traceback_only_in_the_log(
    api: Api, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret detail: password=hunter2 in /srv/app/db.py")

    monkeypatch.setattr(api.service, "get", explode)
    with caplog.at_level(logging.ERROR, logger="taskrt.api"):
        response = api.client.get(
            "/api/v1/tasks/00000000-0000-0000-0000-000000000000",
            headers={**api.auth("reader"), "X-Request-ID": "rid-500"},
        )
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "rid-500"
    _is_problem(response.json(), 500)
    for leak in ("hunter2", "Traceback", "RuntimeError", "db.py"):
        assert leak not in response.text
    (record,) = [r for r in caplog.records if "unhandled error" in r.getMessage()]
    assert "rid-500" in record.getMessage()
    assert record.exc_info is not None
    assert "hunter2" in str(record.exc_info[1])


def test_a_database_that_does_not_answer_is_a_503_without_details(
    make_api: Callable[..., Api],
) -> None:
    api = make_api(database_url="postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    response = api.client.get("/api/v1/tasks", headers={"X-API-Key": f"trk_{'0' * 8}_{'A' * 43}"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    _is_problem(response.json(), 503)
    assert "127.0.0.1" not in response.text
    assert "psycopg" not in response.text
    ready = api.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["errors"] == [{"loc": ["database"], "msg": "did not answer"}]


def test_readiness_when_everything_answers(api: Api) -> None:
    assert api.client.get("/readyz").json() == {
        "status": "ready",
        "checks": {"database": "ok", "redis": "ok"},
    }


def test_the_openapi_document_declares_problem_answers(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for code, answer in operation["responses"].items():
                if int(code) >= 400:
                    assert list(answer["content"]) == ["application/problem+json"], (
                        method,
                        path,
                        code,
                    )
    assert set(doc["components"]["securitySchemes"]) == {"bearer", "apiKey"}
