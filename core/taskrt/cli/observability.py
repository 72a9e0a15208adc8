"""What the service commands (``worker``, ``api``, ``scheduler``, ``dev``) share about logs and
metrics: the ``--log-format`` and ``--metrics-port`` options and starting both."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from taskrt import metrics
from taskrt.exceptions import ConfigurationError
from taskrt.logs import LogFormat, Service, configure_logging, resolve_format
from taskrt.metrics import MULTIPROC_ENV
from taskrt.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])


def log_format_option(func: F) -> F:
    """``--log-format auto|json|text`` (default: ``TASKRT_LOG_FORMAT``, itself ``auto``)."""
    return click.option(
        "--log-format",
        type=click.Choice(["auto", "json", "text"]),
        help="Log lines as JSON objects, one per line, or as text for a terminal; auto: text "
        "when standard error is a terminal, else JSON (default: TASKRT_LOG_FORMAT, which "
        "defaults to auto).",
    )(func)


def metrics_port_option(func: F) -> F:
    """``--metrics-port N`` (default: ``TASKRT_METRICS_PORT``; 0 serves none)."""
    return click.option(
        "--metrics-port",
        type=click.IntRange(0, 65535),
        help="Serve Prometheus metrics at http://TASKRT_METRICS_HOST:PORT/metrics "
        "(default: TASKRT_METRICS_PORT; 0 or unset: none). One port per process.",
    )(func)


def start_logging(settings: Settings, service: Service, log_format: str | None) -> LogFormat:
    """Configure this service's log lines; returns the format chosen."""
    chosen = resolve_format(log_format or settings.log_format)
    configure_logging(settings, service, log_format=chosen)
    return chosen


def refuse_multiprocess_dir(command: str) -> None:
    """Workers, schedulers and ``taskrt dev`` keep their metrics in their own memory.

    With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus-client would write their counters into
    files that ``taskrt api`` sums: the API would then report the workers' numbers as its own.
    """
    if os.environ.get(MULTIPROC_ENV):
        raise ConfigurationError(
            f"{MULTIPROC_ENV} is set, but `taskrt {command}` serves its own metrics (one port per "
            "process) and would write its counters where the API's processes add them up: unset "
            f"{MULTIPROC_ENV} for this process (`taskrt api --workers N` manages its own)"
        )


def start_metrics(settings: Settings, port: int | None) -> Callable[[], None] | None:
    """Serve this process's metrics on ``port`` (else ``TASKRT_METRICS_PORT``); returns the
    function that stops the server, or None when no port is set."""
    chosen = settings.metrics_port if port is None else port
    if not chosen:
        return None
    return metrics.serve(chosen, settings.metrics_host)
