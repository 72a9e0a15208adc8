"""``taskrt api``: serve the HTTP API with uvicorn."""

from __future__ import annotations

import logging
import os

import click

from taskrt.cli.state import get_state
from taskrt.settings import CONFIG_ENV_VAR

FACTORY = "taskrt.api.app:create_app_from_settings"


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
    help="Server processes; they share rate limits through Redis.",
)
def api_command(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (OpenAPI document at /openapi.json, interactive docs at /docs).

    Auth backends, limits and everything else come from the settings (TASKRT_AUTH_BACKENDS,
    TASKRT_API_MAX_BODY_BYTES, TASKRT_RATE_LIMIT_*, ...). Behind a proxy, uvicorn trusts
    X-Forwarded-For only from the addresses in FORWARDED_ALLOW_IPS (default 127.0.0.1).
    """
    import uvicorn

    from taskrt.api.security import AuthChain
    from taskrt.backends import open_store

    state = get_state()
    settings = state.settings
    logging.getLogger().setLevel(settings.log_level)
    # Fail here, with a readable message, rather than inside every server process.
    store = open_store(settings)
    try:
        AuthChain.from_settings(settings, state.runtime.registry, store)
    finally:
        store.dispose()
    if state.config_file:  # the server processes build their settings from the environment
        os.environ[CONFIG_ENV_VAR] = os.path.abspath(state.config_file)
    uvicorn.run(
        FACTORY,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=settings.log_level.lower(),
        proxy_headers=True,
        server_header=False,
    )
