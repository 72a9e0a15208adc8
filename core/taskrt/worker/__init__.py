"""The worker: fetches runs, executes handlers, writes outcomes, renews leases, shuts down
gracefully. :class:`~taskrt.worker.main.Worker` puts the parts together."""

from taskrt.worker.main import Worker, WorkerOptions, parse_queues

__all__ = ["Worker", "WorkerOptions", "parse_queues"]
