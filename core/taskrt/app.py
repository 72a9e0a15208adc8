"""The one wiring point: settings, plugins, store, queue backend and services, put together.

Every program that talks to taskrt's data (the client, the command line, the HTTP API, the
worker and scheduler commands) builds them here, in the same order and the same way::

    app = App.open(settings)           # nothing connects yet: store and backend are lazy
    app.service.enqueue(spec)          # the task service
    app.schedules.create(...)          # the schedule service
    worker = app.worker(options)       # a worker sharing the store and backend
    app.close()

Tests that need exactly their own parts keep building them directly
(``Runtime.load(...)``, ``open_store(...)``, ``TaskService(runtime, store, backend)``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from taskrt.backends import open_queue_backend, open_store
from taskrt.runtime import Runtime
from taskrt.service import TaskService
from taskrt.settings import Settings, load_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from taskrt.queue.base import QueueBackend
    from taskrt.schedule_service import ScheduleService
    from taskrt.store import Store
    from taskrt.worker import Worker, WorkerOptions

__all__ = ["App"]


class App:
    """The parts of taskrt one process uses, built once and closed together."""

    def __init__(self, service: TaskService) -> None:
        self.service = service

    @classmethod
    def open(
        cls,
        settings: Settings | None = None,
        *,
        runtime: Runtime | None = None,
        prepare: Callable[[Engine], None] | None = None,
    ) -> App:
        """Wire the store and queue backend the settings select under a task service.

        ``settings`` default to :attr:`runtime.settings <taskrt.runtime.Runtime.settings>`,
        else to the environment; ``runtime`` defaults to one loading every installed plugin.
        ``prepare`` runs on the store's engine before the queue backend is built (the command
        line creates or checks the schema there). Nothing connects until first use.
        """
        if settings is None:
            settings = runtime.settings if runtime is not None else load_settings()
        if runtime is None:
            runtime = Runtime.load(settings)
        store = open_store(settings)
        if prepare is not None:
            prepare(store.engine)
        return cls(TaskService(runtime, store, open_queue_backend(settings, store)))

    @property
    def runtime(self) -> Runtime:
        """Settings, plugins and the registry of task types."""
        return self.service.runtime

    @property
    def settings(self) -> Settings:
        """The settings everything here was built from."""
        return self.service.settings

    @property
    def store(self) -> Store:
        """The durable record (PostgreSQL or SQLite)."""
        return self.service.store

    @property
    def backend(self) -> QueueBackend:
        """The queue backend (Redis, or the SQL database itself)."""
        return self.service.backend

    @cached_property
    def schedules(self) -> ScheduleService:
        """The schedule service over :attr:`service` (what the scheduler fires through)."""
        from taskrt.schedule_service import ScheduleService

        return ScheduleService(self.service)

    def worker(self, options: WorkerOptions) -> Worker:
        """A worker on this process's store and queue backend."""
        from taskrt.worker import Worker

        return Worker(self.runtime, self.store, self.backend, options)

    def close(self) -> None:
        """Flush what is pending and release every connection."""
        self.service.close()

    def __enter__(self) -> App:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
