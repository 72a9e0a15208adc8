"""Serving the metrics: what a scrape of this process returns, over the API's ``/metrics`` or
a worker's or scheduler's own port. Why one port per worker process and multiprocess mode only
for the API: docs/design/decisions.md, "Observability"."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)

from taskrt.exceptions import ConfigurationError
from taskrt.metrics.catalog import MULTIPROC_ENV, REGISTRY
from taskrt.metrics.gauges import LIVE

log = logging.getLogger("taskrt.metrics")


def multiprocess_mode() -> bool:
    """True when prometheus-client keeps values in files shared by several processes."""
    return bool(os.environ.get(MULTIPROC_ENV))


_exposed: CollectorRegistry | None = None
_exposed_lock = threading.Lock()


def exposition_registry() -> CollectorRegistry:
    """What a scrape of this process returns, built once per process.

    One process: taskrt's metrics plus the usual ``process_*`` and ``python_*`` ones. In
    multiprocess mode (``taskrt api --workers N``): the counters and histograms of every
    process, summed from their files, plus this process's scrape-time gauges; per-process
    ``process_*`` metrics would describe only the process that happened to answer, so they are
    left out.
    """
    global _exposed
    with _exposed_lock:
        if _exposed is None:
            # the *_created series would double the series count for no use in PromQL
            disable_created_metrics()  # type: ignore[no-untyped-call]
            registry = CollectorRegistry(auto_describe=False)
            if multiprocess_mode():
                from prometheus_client.multiprocess import MultiProcessCollector

                MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
                for collector in LIVE:
                    registry.register(collector)
            else:
                for collector in (REGISTRY, PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                    registry.register(collector)
            _exposed = registry
        return _exposed


def render() -> tuple[bytes, str]:
    """The body and content type of a scrape of this process."""
    return generate_latest(exposition_registry()), CONTENT_TYPE_LATEST


def serve(port: int, host: str) -> Callable[[], None]:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread; returns a function that
    stops it. ConfigurationError (naming the address) if the port cannot be bound."""
    try:
        server, _thread = start_http_server(port, addr=host, registry=exposition_registry())
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}): give each process "
            "its own --metrics-port (TASKRT_METRICS_PORT), or 0 to serve none"
        ) from None
    log.info("metrics served at http://%s:%d/metrics", host, port)
    return server.shutdown
