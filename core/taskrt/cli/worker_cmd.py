"""``taskrt worker``: run tasks."""

from __future__ import annotations

import gc
import sys

import click

from taskrt.cli.observability import (
    log_format_option,
    metrics_port_option,
    refuse_multiprocess_dir,
    start_logging,
    start_metrics,
)
from taskrt.cli.state import get_state
from taskrt.exceptions import UnknownTenantError


@click.command("worker")
@click.option(
    "--queues",
    "-q",
    default="default",
    show_default=True,
    help="Queues in strict priority order (high,normal), or weighted (high:5,normal:1).",
)
@click.option(
    "--tenant",
    "tenant",
    help="Serve this tenant's queues (default: the global --tenant / TASKRT_TENANT, else "
    "'default').",
)
@click.option(
    "--tenants",
    "tenants",
    help="Serve several tenants fairly: a,b (weights from the tenants table), a:3,b:1 "
    "(weights given), or '*' (every tenant, also those created later). Not with --tenant.",
)
@click.option("--concurrency", "-c", type=click.IntRange(1, 10_000), help="Handlers run at once.")
@click.option("--name", help="Worker name shown in `taskrt workers` (default: host-pid).")
@click.option(
    "--lease-ttl", type=click.FloatRange(0.2, min_open=True), help="Seconds a lease lasts."
)
@click.option("--shutdown-grace", type=click.FloatRange(0), help="Seconds to drain after SIGTERM.")
@click.option(
    "--prefetch",
    type=click.IntRange(0, 10_000),
    help="Runs claimed ahead of free slots (default: the concurrency).",
)
@metrics_port_option
@log_format_option
def worker_command(
    queues: str,
    tenant: str | None,
    tenants: str | None,
    concurrency: int | None,
    name: str | None,
    lease_ttl: float | None,
    shutdown_grace: float | None,
    prefetch: int | None,
    metrics_port: int | None,
    log_format: str | None,
) -> None:
    """Fetch and run tasks until SIGTERM or Ctrl-C (a second one exits at once)."""
    from taskrt import logs, metrics
    from taskrt.worker import WorkerOptions, parse_queues
    from taskrt.worker.main import check_tenant_name, parse_tenants

    state = get_state()
    settings = state.settings
    refuse_multiprocess_dir("worker")
    start_logging(settings, "worker", log_format)
    names, weights = parse_queues(queues)
    if tenant is not None and tenants is not None:
        raise click.UsageError("give --tenant or --tenants, not both")
    if tenants is not None:
        served, tenant_weights, all_tenants = parse_tenants(tenants)
    else:
        chosen = tenant or getattr(state, "tenant", None) or getattr(settings, "tenant", None)
        served, tenant_weights, all_tenants = [check_tenant_name(chosen or "default")], None, False
    options = WorkerOptions(
        queues=names,
        weights=weights,
        concurrency=concurrency or settings.worker_concurrency,
        name=name,
        lease_ttl=lease_ttl or settings.lease_ttl,
        shutdown_grace=settings.shutdown_grace if shutdown_grace is None else shutdown_grace,
        prefetch=settings.worker_prefetch if prefetch is None else prefetch,
        tenants=served,
        all_tenants=all_tenants,
        tenant_weights=tenant_weights,
    )
    wired = state.app
    if not all_tenants:
        known = {t.name for t in wired.store.list_tenants()}
        for name in served:
            if name not in known:
                raise UnknownTenantError(name)
    worker = wired.worker(options)
    logs.set_process_field("worker_id", worker.id)
    metrics.watch_worker(worker)
    if settings.metrics_queue_depth:
        metrics.watch_queues(wired.service.queues)
    stop_metrics = start_metrics(settings, metrics_port)
    worker.install_signal_handlers()
    code = worker.run()
    if stop_metrics is not None:
        stop_metrics()
    wired.backend.close()
    # everything is handed back and closed: exit without the interpreter walking the whole
    # heap (a final collection of about 0.2 s that would eat into the shutdown deadline)
    gc.freeze()
    sys.exit(code)
