"""``taskrt api``: serve the HTTP API with uvicorn."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import click

from taskrt.cli.observability import log_format_option, start_logging
from taskrt.cli.state import get_state
from taskrt.metrics import MULTIPROC_ENV
from taskrt.settings import CONFIG_ENV_VAR

FACTORY = "taskrt.api.app:create_app_from_settings"

log = logging.getLogger("taskrt.api")


@click.command("api")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 256),
    default=1,
    show_default=True,
    help="Server processes; they share rate limits through Redis and metrics through files.",
)
@log_format_option
def api_command(host: str, port: int, workers: int, log_format: str | None) -> None:
    """Serve the HTTP API (OpenAPI document at /openapi.json, interactive docs at /docs,
    Prometheus metrics at /metrics).

    Auth backends, limits and everything else come from the settings (TASKRT_AUTH_BACKENDS,
    TASKRT_API_MAX_BODY_BYTES, TASKRT_RATE_LIMIT_*, ...). Slow clients are disconnected:
    request headers must arrive within TASKRT_API_HEADER_TIMEOUT seconds, a body within
    TASKRT_API_BODY_TIMEOUT, and idle keep-alive connections close after
    TASKRT_API_KEEPALIVE_TIMEOUT. Behind a proxy, uvicorn trusts
    X-Forwarded-For only from the addresses in FORWARDED_ALLOW_IPS (default 127.0.0.1).
    With --workers above 1 the processes keep their metrics in files in a temporary folder
    (PROMETHEUS_MULTIPROC_DIR, made and removed here unless it is set) so that any of them
    answers /metrics with the sum of all.
    """
    import uvicorn

    from taskrt.api.security import AuthChain
    from taskrt.api.server import NoDelayH11Protocol

    state = get_state()
    settings = state.settings
    chosen_format = start_logging(settings, "api", log_format)
    # Fail here, with a readable message, rather than inside every server process (each of
    # them wires its own App; this one is closed before they start).
    wired = state.app  # prepares the schema
    try:
        AuthChain.from_settings(settings, wired.runtime.registry, wired.store)
    finally:
        wired.close()
    # the server processes build their settings from the environment
    if state.config_file:
        os.environ[CONFIG_ENV_VAR] = os.path.abspath(state.config_file)
    os.environ["TASKRT_LOG_FORMAT"] = chosen_format
    made_dir = _multiprocess_dir(workers)
    try:
        uvicorn.run(
            FACTORY,
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=settings.log_level.lower(),
            log_config=None,  # uvicorn's lines go through taskrt's handler (JSON or text)
            proxy_headers=True,
            server_header=False,
            http=NoDelayH11Protocol,
            timeout_keep_alive=settings.api_keepalive_timeout,
        )
    finally:
        if made_dir is not None:
            shutil.rmtree(made_dir, ignore_errors=True)


def _multiprocess_dir(workers: int) -> str | None:
    """Set up prometheus-client's multiprocess mode for the server processes.

    A folder given in ``PROMETHEUS_MULTIPROC_DIR`` is emptied of earlier runs' files (they
    would count again); otherwise several processes get a fresh temporary folder, returned so
    it can be removed afterwards. One process needs none.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        folder = Path(given)
        if not folder.is_dir():
            folder.mkdir(parents=True)
        mine = f"_{os.getpid()}.db"  # this process may have opened its files already
        for stale in folder.glob("*.db"):
            if not stale.name.endswith(mine):
                stale.unlink()
        log.info("metrics of the API processes are kept in %s", folder)
        return None
    if workers == 1:
        return None
    made = tempfile.mkdtemp(prefix="taskrt-api-metrics-")
    os.environ[MULTIPROC_ENV] = made
    return made
