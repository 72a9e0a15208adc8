"""One task followed from an HTTP request with a W3C `traceparent` to the worker's JSON log
lines: every line about the task carries the request's trace id, the handler's own
`ctx.logger` line and its libraries' lines included."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.support import ApiProcess
from tests.observability.support import about, json_lines
from tests.support.db import Db
from tests.support.procs import WorkerProcess, run_cli, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _traceparent(trace_id: str) -> str:
    return f"00-{trace_id}-00f067aa0ba902b7-01"


@pytest.fixture
def stack(service_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The API and a worker logging JSON (the default) at DEBUG."""
    env = {**service_env, "TASKRT_LOG_LEVEL": "DEBUG"}
    key = run_cli(["apikey", "create", "--name", "trace", "--role", "producer"], env).stdout
    api = ApiProcess(env, tmp_path / "api.log")
    worker = WorkerProcess(env, tmp_path / "worker.log", "--name", "tracer", "-c", "2")
    try:
        api.start()
        worker.start()
        yield {"api": api, "worker": worker, "key": key.strip()}
    finally:
        worker.stop()
        api.stop()


def _create(stack: dict[str, Any], trace_id: str, name: str, **body: Any) -> str:
    headers = {"Authorization": f"Bearer {stack['key']}", "traceparent": _traceparent(trace_id)}
    with stack["api"].client(**headers) as http:
        response = http.post("/api/v1/tasks", json={"name": name, **body})
    assert response.status_code == 201, response.text
    assert response.headers["x-request-id"] == trace_id
    return str(response.json()["id"])


def _check_shape(line: dict[str, Any], service: str) -> None:
    assert TIMESTAMP.match(line["timestamp"]), line
    assert line["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}
    assert line["service"] == service
    assert line["logger"]
    assert isinstance(line["message"], str)


def test_the_trace_id_reaches_every_worker_line_about_the_task(
    stack: dict[str, Any], db: Db
) -> None:
    traces = {
        "word_count": "4bf92f3577b34da6a3ce929d0e0e4736",
        "flaky": "0af7651916cd43dd8448eb211c80319c",
        "sync_library": "b7ad6b7169203331b7ad6b7169203331",
        "async_library": "c1d2e3f4a5b6c7d8e9f0a1b2c3d4e5f6",
    }
    tasks = {
        "word_count": _create(
            stack, traces["word_count"], "example.word_count", payload={"text": "to be or not"}
        ),
        "flaky": _create(
            stack,
            traces["flaky"],
            "example.flaky",
            payload={"succeed_on_attempt": 2},
            retry_params={"base": 0.05},
        ),
        "sync_library": _create(stack, traces["sync_library"], "testkit.chatty"),
        "async_library": _create(stack, traces["async_library"], "testkit.chatty_async"),
    }
    for task_id in tasks.values():
        wait_for(
            lambda t=task_id: (
                db.scalar("SELECT status FROM tasks WHERE id = :t", t=t) == "completed"
            ),
            30,
            message=f"task {task_id} completed",
        )
    worker: WorkerProcess = stack["worker"]

    def finished_lines() -> list[dict[str, Any]] | None:
        lines = json_lines(worker.log())
        done = [line for line in lines if "succeeded" in line["message"]]
        return lines if len(done) >= len(tasks) else None

    lines = wait_for(finished_lines, 10, message="every task's success line written")
    for line in lines:
        _check_shape(line, "worker")
    worker_id = next(line["worker_id"] for line in lines if "started" in line["message"])

    for kind, task_id in tasks.items():
        mine = about(lines, task_id)
        assert len(mine) >= 2, (kind, mine)
        for line in mine:
            assert line["trace_id"] == traces[kind], (kind, line)
            assert line["task_id"] == task_id, (kind, line)
            assert line["worker_id"] == worker_id, (kind, line)
            assert line["queue"] == "default"
            assert line["run_id"]
            assert isinstance(line["attempt"], int)
        # no line about another task carries this trace id
        others = [line for line in lines if line.get("trace_id") == traces[kind]]
        assert all(line["task_id"] == task_id for line in others), others

    # the handler's own ctx.logger line, with every id
    (counted,) = [
        line for line in about(lines, tasks["word_count"]) if line["message"] == "counted 4 words"
    ]
    assert counted["logger"] == "taskrt.task.example.word_count"
    assert counted["task_type"] == "example.word_count"
    assert counted["attempt"] == 1
    assert counted["level"] == "INFO"

    # taskrt's own lines about the flaky task: the retry, with the error, then the success
    flaky = about(lines, tasks["flaky"])
    (retry,) = [line for line in flaky if "attempt 2 follows" in line["message"]]
    assert retry["level"] == "INFO"
    assert retry["attempt"] == 1
    assert retry["error"]["type"] == "taskrt_handlers_example.plugin.FlakyError"
    assert retry["error"]["message"] == "attempt 1 fails before 2"
    assert "Traceback" in retry["error"]["traceback"]
    success = [line for line in flaky if "succeeded" in line["message"]]
    assert [line["attempt"] for line in success] == [2]
    assert {line["run_id"] for line in flaky} == {str(r.id) for r in db.runs(tasks["flaky"])}

    # a library's logger, used inside a def and an async def handler, carries the ids too
    for kind, text in (
        ("sync_library", "library line from a def handler"),
        ("async_library", "library line from an async handler"),
    ):
        (line,) = [line for line in about(lines, tasks[kind]) if line["message"] == text]
        assert line["logger"] == "testkit.library"
        assert line["trace_id"] == traces[kind]

    # the API's own lines about the request carry the trace id too
    api_lines = json_lines(stack["api"].log())
    for line in api_lines:
        _check_shape(line, "api")
    access = [
        line
        for line in api_lines
        if line["logger"] == "uvicorn.access" and "POST /api/v1/tasks" in line["message"]
    ]
    assert {line.get("trace_id") for line in access} == set(traces.values())
