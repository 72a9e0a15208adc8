"""nginx with the shipped ``config/nginx/nginx.conf`` in front of a real ``taskrt api``: it proxies,
refuses oversized bodies itself, limits bursts per address, carries request ids both ways, logs
JSON and keeps ``/metrics`` inside (issue 8, items 3 and 5)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskrt.settings import Settings
from tests.deploy.conftest import Gateway
from tests.support.procs import REPO_ROOT, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

NGINX_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_BODY = Settings.model_fields["api_max_body_bytes"].default


def _client(gateway: Gateway) -> httpx.Client:
    return httpx.Client(base_url=gateway.url, headers={"X-API-Key": gateway.key}, timeout=10)


def _the_request_id(response: httpx.Response) -> str:
    ids = response.headers.get_list("x-request-id")
    assert len(ids) == 1, f"expected one X-Request-ID, got {ids}"
    return ids[0]


def _log_entry(gateway: Gateway, request_id: str) -> dict[str, Any]:
    def entry() -> dict[str, Any] | None:
        found = [e for e in gateway.nginx.access_entries() if e["request_id"] == request_id]
        return found[0] if found else None

    return wait_for(entry, 5, interval=0.05, message=f"access log line of {request_id}")


def _reached_api(entry: dict[str, Any]) -> bool:
    return entry["upstream_addr"] not in ("", "-")


def test_a_task_created_through_nginx_carries_the_request_id_both_ways(gateway: Gateway) -> None:
    def create(headers: dict[str, str]) -> tuple[str, str]:
        response = http.post(
            "/api/v1/tasks",
            json={"name": "example.echo", "payload": {"via": "nginx"}},
            headers=headers,
        )
        assert response.status_code == 201, response.text
        return response.json()["id"], _the_request_id(response)

    with _client(gateway) as http:
        # the client's id goes to the API (it becomes the task's trace id) and comes back
        given_task, given_id = create({"X-Request-ID": "client-req-42"})
        # without one, nginx makes one; the API keeps it, and it comes back
        made_task, made_id = create({})
        # a malformed one is replaced by nginx's, the same way the API would
        bad_task, bad_id = create({"X-Request-ID": "not a valid id!"})
        # with a W3C traceparent and no X-Request-ID, the trace id is the request id
        trace = "4bf92f3577b34da6a3ce929d0e0e4736"
        traced_task, traced_id = create({"traceparent": f"00-{trace}-00f067aa0ba902b7-01"})
        # an invalid traceparent (version ff) is ignored, as the API ignores it
        _, untraced_id = create({"traceparent": f"ff-{trace}-00f067aa0ba902b7-01"})
        traces = {
            t: http.get(f"/api/v1/tasks/{t}").json()
            for t in (given_task, made_task, bad_task, traced_task)
        }

    assert given_id == "client-req-42"
    assert NGINX_ID.match(made_id), made_id
    assert NGINX_ID.match(bad_id), bad_id
    assert bad_id != made_id
    assert traces[given_task]["trace_id"] == "client-req-42"
    assert traces[made_task]["trace_id"] == made_id
    assert traces[bad_task]["trace_id"] == bad_id
    assert traced_id == trace
    assert traces[traced_task]["trace_id"] == trace
    assert NGINX_ID.match(untraced_id)
    assert untraced_id != trace
    assert traces[given_task]["status"] == "queued"
    assert traces[given_task]["payload"] == {"via": "nginx"}

    # one JSON object per access-log line, with the same id and the upstream's answer
    entry = _log_entry(gateway, made_id)
    assert entry["method"] == "POST"
    assert entry["uri"] == "/api/v1/tasks"
    assert entry["status"] == 201
    assert entry["upstream_status"] == "201"
    assert entry["upstream_addr"] == f"127.0.0.1:{gateway.api.port}"
    assert isinstance(entry["request_time"], float | int)
    assert _log_entry(gateway, "client-req-42")["status"] == 201
    assert gateway.key not in gateway.nginx.access_log.read_text()


def _established_to(port: int) -> int:
    """TCP connections established to local ``port`` (server side), from /proc/net/tcp."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, _remote, state = line.split()[1:4]
        if int(local.split(":")[1], 16) == port and state == "01":
            count += 1
    return count


def test_keep_alive_connections_to_the_api_are_reused(gateway: Gateway) -> None:
    port = gateway.api.port
    # let the connection of nginx's start-up check idle out (upstream keepalive_timeout 4s)
    wait_for(lambda: _established_to(port) == 0, 10, message="idle upstream connections closed")
    with _client(gateway) as http:
        seen = []
        for _ in range(10):
            assert http.get("/healthz").status_code == 200
            seen.append(_established_to(port))
    # every request went over the one upstream connection nginx keeps open: without keep-alive
    # nginx would close each after its answer, and none would be found established
    assert seen == [1] * 10


def test_metrics_are_not_served_to_the_outside(gateway: Gateway) -> None:
    paths = [
        "/metrics",
        "/metrics/",
        "/metrics?format=text",
        "//metrics",
        "/%6detrics",
        "/metrics/x",
    ]
    with _client(gateway) as http:
        answers = {path: http.get(gateway.url + path) for path in paths}
    for path, response in answers.items():
        assert response.status_code == 404, (path, response.status_code)
        assert response.json()["type"] == "urn:taskrt:problem:not-found"
        entry = _log_entry(gateway, _the_request_id(response))
        assert entry["uri"] == path
        assert not _reached_api(entry), (path, entry)
    assert "/metrics" not in gateway.api.log()
    assert "%6d" not in gateway.api.log()


def _padded_task_body(size: int) -> bytes:
    """A valid task-creation body of exactly ``size`` bytes."""
    head, tail = b'{"name":"example.echo","payload":{"pad":"', b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_bodies_over_the_api_limit_are_refused_by_nginx(gateway: Gateway) -> None:
    assert MAX_BODY == 1024 * 1024, "nginx.conf says client_max_body_size 1m: keep them equal"
    headers = {"Content-Type": "application/json"}
    with _client(gateway) as http:
        at_limit = http.post("/api/v1/tasks", content=_padded_task_body(MAX_BODY), headers=headers)
        over = http.post("/api/v1/tasks", content=_padded_task_body(MAX_BODY + 1), headers=headers)

        def chunks() -> Iterator[bytes]:
            body = _padded_task_body(MAX_BODY + 64 * 1024)
            for start in range(0, len(body), 64 * 1024):
                yield body[start : start + 64 * 1024]

        chunked = http.post("/api/v1/tasks", content=chunks(), headers=headers)

    # exactly at the limit nginx passes it on: the API answers (its payload limit is smaller)
    entry = _log_entry(gateway, _the_request_id(at_limit))
    assert _reached_api(entry), entry
    assert entry["request_length"] > MAX_BODY
    assert "gateway" not in at_limit.text

    # one byte more: nginx answers 413 in the API's error shape and never calls the API
    for response in (over, chunked):
        assert response.status_code == 413, response.text[:300]
        assert response.headers["content-type"] == "application/problem+json"
        problem = response.json()
        request_id = _the_request_id(response)
        assert problem["status"] == 413
        assert problem["type"] == "urn:taskrt:problem:payload-too-large"
        assert problem["request_id"] == request_id
        assert "gateway" in problem["detail"]
        assert not _reached_api(_log_entry(gateway, request_id))


def test_a_burst_from_one_address_is_limited(gateway: Gateway) -> None:
    def get(_: int) -> httpx.Response:
        return http.get("/healthz")

    with _client(gateway) as http, ThreadPoolExecutor(max_workers=16) as pool:
        start = time.monotonic()
        answers = list(pool.map(get, range(240)))
        elapsed = time.monotonic() - start
        statuses = Counter(r.status_code for r in answers)
        assert set(statuses) == {200, 429}, statuses
        # 30 requests a second with a burst of 60: the first 60 at least pass at once
        assert statuses[200] >= 60, statuses
        assert statuses[200] <= 60 + 30 * elapsed + 2, (statuses, elapsed)
        refused = next(r for r in answers if r.status_code == 429)
        assert refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"] == "urn:taskrt:problem:rate-limited"
        assert problem["request_id"] == _the_request_id(refused)
        assert not _reached_api(_log_entry(gateway, problem["request_id"]))

        # the bucket refills: after a pause the same address is served again (and the next
        # test sharing this gateway finds a full bucket)
        time.sleep(2.1)
        assert http.get("/healthz").status_code == 200


def _healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    """The image's health check script, in its ``api`` mode, against ``port``."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "config" / "docker" / "healthcheck.py")],
        env={"TASKRT_HEALTHCHECK": "api", "TASKRT_API_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_api_down_gives_a_problem_503_and_fails_the_health_check(own_gateway: Gateway) -> None:
    gateway = own_gateway
    assert _healthcheck(gateway.api.port).returncode == 0
    gateway.api.stop()
    with _client(gateway) as http:
        response = http.get("/api/v1/queues", headers={"X-Request-ID": "while-down"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert _the_request_id(response) == "while-down"
    assert json.loads(response.text)["type"] == "urn:taskrt:problem:unavailable"
    failed = _healthcheck(gateway.api.port)
    assert failed.returncode == 1
    assert "unhealthy (api)" in failed.stderr
