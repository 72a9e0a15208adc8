"""A bare ``taskrt api`` disconnects clients that send headers or bodies too slowly
(slowloris) and idle keep-alive connections; the deadlines are settings (issue 12, defect 6).
Raw sockets against a real server process."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.api.conftest import admin_key
from tests.api.support import ApiProcess

pytestmark = pytest.mark.services

TIMEOUTS = {"api_header_timeout": 1.5, "api_body_timeout": 1.5, "api_keepalive_timeout": 1}
WITHIN = 6.0
"""Seconds by which a connection must be closed: the deadline plus a generous margin."""


def _connect(server: ApiProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=WITHIN + 2)


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float:
    """Seconds until the server closes ``sock``, sending one byte of ``trickle`` every 0.3 s
    meanwhile; fails if it is still open after ``seconds``."""
    start = time.monotonic()
    sock.setblocking(False)
    sent = 0
    try:
        while time.monotonic() - start < seconds:
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                data = None
            except ConnectionResetError:
                return time.monotonic() - start
            if data == b"":
                return time.monotonic() - start
            if trickle and sent < len(trickle):
                try:
                    sock.send(trickle[sent : sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - start
                sent += 1
            time.sleep(0.3)
        raise AssertionError(f"the connection is still open after {seconds} s")
    finally:
        sock.close()


def _served(sock: socket.socket, request: bytes) -> None:
    """Send ``request`` and read its whole response (a 2xx)."""
    sock.sendall(request)
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = sock.recv(65536)
        assert chunk, "closed before the response"
        reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 2"), head
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)


def _silent(server: ApiProcess, key: str) -> float:
    return _closed_within(_connect(server), WITHIN)


def _slow_headers(server: ApiProcess, key: str) -> float:
    sock = _connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    # one header byte every 0.3 s, never ending the headers: slowloris
    return _closed_within(sock, WITHIN, trickle=b"X-Slow: " + b"a" * 200)


def _slow_body(server: ApiProcess, key: str) -> float:
    sock = _connect(server)
    sock.sendall(
        b"POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"X-API-Key: {key}\r\n".encode()
        + b"Content-Length: 1000\r\n\r\n{"
    )
    return _closed_within(sock, WITHIN, trickle=b'"name": "example.echo"' * 40)


def _idle_keep_alive(server: ApiProcess, key: str) -> float:
    sock = _connect(server)
    _served(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    return _closed_within(sock, WITHIN)


def _slow_next_request(server: ApiProcess, key: str) -> float:
    sock = _connect(server)
    _served(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    # the next request's bytes cancel uvicorn's own keep-alive timer; ours still holds
    return _closed_within(sock, WITHIN, trickle=b"GET /healthz HTTP/1.1\r\nX-Slow: " + b"a" * 100)


SCENARIOS = {
    "silent": _silent,
    "slow-headers": _slow_headers,
    "slow-body": _slow_body,
    "idle-keep-alive": _idle_keep_alive,
    "slow-next-request": _slow_next_request,
}


def test_slow_and_idle_clients_are_disconnected_and_prompt_ones_served(
    api_process: Callable[..., ApiProcess], service_env: dict[str, str]
) -> None:
    key = admin_key(service_env)
    server = api_process(**TIMEOUTS)
    # every scenario at once, on its own connection: one server, a few seconds in all
    with ThreadPoolExecutor(len(SCENARIOS) + 1) as pool:
        futures = {name: pool.submit(run, server, key) for name, run in SCENARIOS.items()}
        prompt = pool.submit(_prompt_client, server)
        took = {name: future.result() for name, future in futures.items()}
        prompt.result()
    # none was cut before its deadline (a close at once would be another failure)
    assert all(seconds >= 0.9 for seconds in took.values()), took
    log = server.log()
    assert "line and headers did not arrive within 1.5 s (TASKRT_API_HEADER_TIMEOUT)" in log
    assert "body did not arrive within 1.5 s (TASKRT_API_BODY_TIMEOUT)" in log


def _prompt_client(server: ApiProcess) -> None:
    """A client that keeps each deadline is served request after request on one connection."""
    sock = _connect(server)
    try:
        for _ in range(4):
            _served(sock, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.6)  # below every deadline
    finally:
        sock.close()
