"""``taskrt dev``: the HTTP API, a scheduler and a worker in one process, for a laptop.

It runs on whatever the settings select, the embedded SQLite file by default (its schema is
created or upgraded first), makes an admin API key for this session and prints it with the API's
URL and an example ``curl``. SIGINT (Ctrl-C) or SIGTERM stops the API, then lets the worker
drain, revokes the session's key and exits 0; a second signal exits at once.

The parts are the ones the separate commands run (uvicorn on :func:`~taskrt.api.create_app`,
:class:`~taskrt.scheduler.runner.Scheduler`, :class:`~taskrt.worker.Worker`), each in a thread of
this process, sharing one store and queue backend.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from taskrt.cli.observability import log_format_option, refuse_multiprocess_dir, start_logging
from taskrt.cli.state import CliState, get_state
from taskrt.exceptions import ConfigurationError

if TYPE_CHECKING:
    import uvicorn

    from taskrt.store import ApiKeyRecord

log = logging.getLogger("taskrt.dev")

EXAMPLE_TASK = "example.echo"
STARTUP_TIMEOUT = 30.0
API_STOP_TIMEOUT = 10.0


@click.command("dev")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address the API listens on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port of the API; 0 picks a free one (printed at start).",
)
@click.option(
    "--queues",
    "-q",
    default="default",
    show_default=True,
    help="Queues the worker serves, as for `taskrt worker` (high,normal or high:5,normal:1).",
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1, 10_000),
    help="Handlers the worker runs at once (default: TASKRT_WORKER_CONCURRENCY).",
)
@log_format_option
def dev_command(
    host: str, port: int, queues: str, concurrency: int | None, log_format: str | None
) -> None:
    """Run the HTTP API, a scheduler and a worker in one process until Ctrl-C.

    With no settings everything lives in `taskrt.db` in the working directory (no servers
    needed); otherwise it uses the configured database and Redis. Prints the API's URL, an
    admin API key made for this session (revoked when it stops) and an example `curl`.
    Prometheus metrics of all three are at the API's /metrics.
    """
    from taskrt.worker import parse_queues

    state = get_state()
    settings = state.settings
    names, weights = parse_queues(queues)  # a bad --queues fails before anything starts
    refuse_multiprocess_dir("dev")
    wired = state.app  # creates the embedded schema on first use, or checks a server's
    # configured only now: the migration's own INFO lines are noise here
    start_logging(settings, "dev", log_format)
    http_app = _build_app(state)
    sock = _bind(host, port)
    key = _session_key(state)
    try:
        code = _run(state, http_app, sock, key, names, weights, concurrency)
    finally:
        sock.close()
        if key is not None:
            _revoke(state, key[0])
        wired.close()
    raise SystemExit(code)


# --- preparing ------------------------------------------------------------------------------


def _build_app(state: CliState) -> Any:
    from taskrt.api import create_app

    # ConfigurationError here (e.g. an unknown auth backend) stops us before anything runs
    return create_app(state.runtime, state.app.service)  # it scopes each request itself


def _bind(host: str, port: int) -> socket.socket:
    """The API's listening socket, bound here so port 0 can be resolved and printed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): pass another --port, "
            "or --port 0 for a free one"
        ) from None
    sock.set_inheritable(True)
    return sock


def _session_key(state: CliState) -> tuple[ApiKeyRecord, str] | None:
    """An admin key of the chosen tenant for this session, when the ``apikey`` backend is
    the one in use."""
    from taskrt.apikeys import create_api_key

    settings = state.settings
    if settings.auth_disabled or "apikey" not in settings.auth_backends:
        return None
    name = f"taskrt-dev-{socket.gethostname()}-{os.getpid()}"
    tenant = state.service.tenant
    return create_api_key(
        state.app.store, name=name, role="admin", actor=state.actor(), tenant=tenant
    )


def _revoke(state: CliState, record: ApiKeyRecord) -> None:
    try:
        state.app.store.revoke_api_key(record.id, actor=state.actor(), tenant=state.tenant)
    except Exception as exc:  # the store is away: say so, the exit code stays the workers'
        log.warning("could not revoke the session's API key %s: %s", record.prefix, exc)


# --- running --------------------------------------------------------------------------------


@dataclass
class _Part:
    """One component running in a thread, and how to ask it to stop."""

    name: str
    thread: threading.Thread
    stop: Callable[[], None]
    join_timeout: float


class _Signals:
    """SIGINT and SIGTERM ask for a stop; a second one exits at once."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.count = 0

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if self.count >= 2:
            os._exit(1)
        self.stop.set()

    def install(self) -> None:
        """Handle SIGINT and SIGTERM in this (the main) thread."""
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)


def _run(
    state: CliState,
    app: Any,
    sock: socket.socket,
    key: tuple[ApiKeyRecord, str] | None,
    queues: list[str],
    weights: dict[str, int] | None,
    concurrency: int | None,
) -> int:
    signals = _Signals()
    signals.install()
    server = _server(state, app)
    parts = [
        _api_part(server, sock),
        _scheduler_part(state),
        _worker_part(state, queues, weights, concurrency),
    ]
    for part in parts:
        part.thread.start()
    failed = not _wait_started(server, parts[0].thread)
    if not failed:
        _print_banner(state, sock, key, queues, concurrency)
        while not signals.stop.wait(0.25):
            dead = [p.name for p in parts if not p.thread.is_alive()]
            if dead:
                log.error("taskrt dev: the %s stopped unexpectedly; stopping the rest", dead[0])
                failed = True
                break
    click.echo("stopping the API, the scheduler and the worker (it drains) ...", err=True)
    for part in parts:
        part.stop()
    for part in parts:
        part.thread.join(part.join_timeout)
        if part.thread.is_alive():
            log.error("taskrt dev: the %s did not stop in time", part.name)
            failed = True
    click.echo("stopped", err=True)
    return 1 if failed else 0


def _server(state: CliState, app: Any) -> uvicorn.Server:
    import uvicorn

    config = uvicorn.Config(
        app,
        log_level=state.settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through taskrt's handler (JSON or text)
        server_header=False,
        timeout_graceful_shutdown=5,
    )
    return uvicorn.Server(config)


def _api_part(server: uvicorn.Server, sock: socket.socket) -> _Part:
    # off the main thread uvicorn installs no signal handlers: the main thread owns them
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="taskrt-dev-api", daemon=True
    )

    def stop() -> None:
        server.should_exit = True

    return _Part("API", thread, stop, API_STOP_TIMEOUT)


def _scheduler_part(state: CliState) -> _Part:
    from taskrt.scheduler.runner import Scheduler

    scheduler = Scheduler(state.app.schedules, tick=state.settings.scheduler_tick)
    thread = threading.Thread(target=scheduler.run, name="taskrt-dev-scheduler", daemon=True)
    return _Part("scheduler", thread, scheduler.request_stop, 10.0)


def _worker_part(
    state: CliState, queues: list[str], weights: dict[str, int] | None, concurrency: int | None
) -> _Part:
    from taskrt import metrics
    from taskrt.worker import WorkerOptions

    settings = state.settings
    options = WorkerOptions(
        queues=queues,
        weights=weights,
        concurrency=concurrency or settings.worker_concurrency,
        name=f"dev-{socket.gethostname()}-{os.getpid()}",
        lease_ttl=settings.lease_ttl,
        shutdown_grace=settings.shutdown_grace,
        tenants=[state.service.tenant],
    )
    worker = state.app.worker(options)
    metrics.watch_worker(worker)
    thread = threading.Thread(target=worker.run, name="taskrt-dev-worker", daemon=True)
    return _Part("worker", thread, worker.request_stop, settings.shutdown_grace + 15.0)


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if server.started:
            return True
        if not thread.is_alive():
            log.error("taskrt dev: the API did not start (see the messages above)")
            return False
        time.sleep(0.02)
    log.error("taskrt dev: the API did not start within %.0f s", STARTUP_TIMEOUT)
    return False


# --- telling the user -----------------------------------------------------------------------


def base_url(sock: socket.socket) -> str:
    """The URL a local client reaches the API at (a wildcard address becomes loopback)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", ""):  # noqa: S104 - recognising the wildcard, not binding to it
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def _print_banner(
    state: CliState,
    sock: socket.socket,
    key: tuple[ApiKeyRecord, str] | None,
    queues: list[str],
    concurrency: int | None,
) -> None:
    from taskrt.backends import describe_backend

    settings = state.settings
    url = base_url(sock)
    backend = describe_backend(settings)
    task_types = state.runtime.registry.task_types
    lines = [
        "taskrt dev: the HTTP API, a scheduler and a worker in one process",
        f"  store:    {settings.masked()['database_url']} (queues: {backend['queue']})",
        f"  worker:   queues {','.join(queues)}, "
        f"concurrency {concurrency or settings.worker_concurrency}",
        "",
        f"  API:      {url}   (interactive docs: {url}/docs)",
    ]
    if key is not None:
        record, secret = key
        lines.append(f"  API key:  {secret}")
        lines.append(
            f"            (role {record.role}, made for this session as {record.name!r}; "
            "revoked when taskrt dev stops)"
        )
        auth = f' -H "Authorization: Bearer {secret}"'
    elif settings.auth_disabled:
        lines.append("  API key:  none needed: TASKRT_AUTH_DISABLED=true (anyone may call it)")
        auth = ""
    else:
        backends = ",".join(settings.auth_backends)
        lines.append(
            f"  API key:  none made: TASKRT_AUTH_BACKENDS={backends} has no apikey backend; "
            "use credentials of your own"
        )
        auth = ' -H "Authorization: Bearer $TOKEN"'
    body = json.dumps({"name": EXAMPLE_TASK, "payload": {"hello": "world"}})
    lines += [
        "",
        f"Create an {EXAMPLE_TASK} task:",
        f"  curl -s -X POST {url}/api/v1/tasks{auth} \\",
        f'    -H "Content-Type: application/json" -d {shlex.quote(body)}',
        "Then list tasks:",
        f"  curl -s {url}/api/v1/tasks{auth}",
    ]
    if EXAMPLE_TASK not in task_types:
        lines.append(
            f"({EXAMPLE_TASK} is not installed: `pip install ./handlers_example`; installed "
            f"task types: {', '.join(sorted(task_types)) or 'none'})"
        )
    lines += ["", "Press Ctrl-C to stop."]
    click.echo("\n".join(lines))
