"""Real ``taskrt api`` processes: end to end with a real worker, one rate limit shared by two API
processes, and oversized bodies refused before they are read."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api.conftest import admin_key
from tests.api.support import ApiProcess
from tests.support.procs import WorkerProcess, run_cli, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]


def test_a_task_created_over_http_is_run_by_a_worker_and_shown_completed(
    api_process: Callable[..., ApiProcess], service_env: dict[str, str], tmp_path: Path
) -> None:
    key = admin_key(service_env)
    server = api_process()
    worker = WorkerProcess(service_env, tmp_path / "worker.log").start()
    try:
        with server.client(Authorization=f"Bearer {key}") as http:
            created = http.post(
                "/api/v1/tasks",
                json={"name": "example.word_count", "payload": {"text": "to be or not to be"}},
                headers={"X-Request-ID": "e2e-request-1"},
            )
            assert created.status_code == 201, created.text
            task_id = created.json()["id"]

            def completed() -> dict[str, object] | None:
                task: dict[str, object] = http.get(f"/api/v1/tasks/{task_id}").json()
                return task if task["status"] == "completed" else None

            task = wait_for(completed, 30, interval=0.1, message="the task to complete")
            runs = http.get(f"/api/v1/tasks/{task_id}/runs").json()["items"]
    finally:
        assert worker.stop() == 0, worker.log()[-3000:]
    latest = task["latest_run"]
    assert isinstance(latest, dict)
    assert latest["status"] == "succeeded"
    assert latest["result"]["words"] == 6
    assert task["trace_id"] == "e2e-request-1"
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "succeeded")]
    assert key not in server.log()
    assert key.split("_", 2)[2] not in server.log()


def test_two_api_processes_share_one_rate_limit(
    api_process: Callable[..., ApiProcess], service_env: dict[str, str]
) -> None:
    key = run_cli(
        ["apikey", "create", "--name", "burst", "--role", "reader"], service_env
    ).stdout.strip()
    servers = [api_process(f"api{n}", rate_limit_reader="6/hour") for n in range(2)]
    clients = [s.client(**{"X-API-Key": key}) for s in servers]
    try:
        statuses = [clients[i % 2].get("/api/v1/tasks").status_code for i in range(8)]
        limited = clients[1].get("/api/v1/queues")
    finally:
        for client in clients:
            client.close()
    # each process saw only four requests: only a shared bucket refuses any of them
    assert statuses == [200] * 6 + [429, 429]
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1


def _send_headers(sock: socket.socket, port: int, extra: str) -> None:
    sock.sendall(
        (
            f"POST /api/v1/tasks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n"
        ).encode()
    )


def _read_status(sock: socket.socket) -> int:
    sock.settimeout(10)
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1])


def test_oversized_bodies_are_refused_before_they_are_read(
    api_process: Callable[..., ApiProcess], service_env: dict[str, str]
) -> None:
    key = admin_key(service_env)  # an anonymous caller gets its 401 before any body is read
    server = api_process()
    # a declared length far over the limit: answered at once, with no body sent at all
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        _send_headers(sock, server.port, f"Content-Length: {50 * 1024 * 1024}\r\n")
        started = time.monotonic()
        assert _read_status(sock) == 413
        assert time.monotonic() - started < 5
    # a chunked body: refused once the count passes 1 MiB, though the body never ends
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        _send_headers(sock, server.port, f"Transfer-Encoding: chunked\r\nX-API-Key: {key}\r\n")
        chunk = b"x" * 65536
        for _ in range(20):  # 1.25 MiB, and no terminating zero-length chunk
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except OSError:
                break  # the server already answered and closed
        assert _read_status(sock) == 413
    assert server.proc is not None
    assert server.proc.poll() is None
