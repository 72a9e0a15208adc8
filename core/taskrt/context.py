"""The context object a handler receives next to its payload, and the running task's tenant."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
import uuid
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from taskrt.exceptions import TaskCancelled
from taskrt.records import DEFAULT_TENANT

current_tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "taskrt_current_tenant", default=None
)
"""The tenant of the task whose handler is running in this context (None outside handlers).

The worker sets it around every handler call; the default client that
``task_type.enqueue(...)`` uses without a ``client`` reads it, so a handler's child tasks land
in its own tenant, not in the process's ``TASKRT_TENANT`` (a ``--tenants '*'`` worker would
otherwise write every tenant's children into one)."""


def running_tenant(default: str = DEFAULT_TENANT) -> str:
    """The running handler's tenant, or ``default`` outside a handler."""
    tenant = current_tenant.get()
    return default if tenant is None else tenant


class _RunLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger that stamps every line with the run's ids (as ``extra`` fields)."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


@dataclass(eq=False)
class TaskContext:
    """Everything a handler may want to know about the run it is executing.

    ``task_id``, ``run_id`` and ``attempt`` identify the run: use them to make external effects
    idempotent, since delivery is at least once.
    """

    task_id: uuid.UUID
    run_id: uuid.UUID
    attempt: int
    task_name: str
    queue: str
    worker_id: uuid.UUID | None = None
    trace_id: str | None = None
    timeout: float | None = None
    tenant: str = DEFAULT_TENANT
    """The tenant the task belongs to."""
    started_monotonic: float = field(default_factory=time.monotonic)
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _logger: logging.LoggerAdapter | None = field(default=None, init=False, repr=False)  # type: ignore[type-arg]

    @property
    def logger(self) -> logging.LoggerAdapter:  # type: ignore[type-arg]
        """A logger whose lines carry this run's ids (task, run, attempt, queue, worker,
        trace); built on first use, so handlers that never log pay nothing for it."""
        if self._logger is None:
            self._logger = _RunLogger(
                logging.getLogger(f"taskrt.task.{self.task_name}"),
                {
                    "task_id": str(self.task_id),
                    "run_id": str(self.run_id),
                    "attempt": self.attempt,
                    "task_type": self.task_name,
                    "queue": self.queue,
                    "worker_id": str(self.worker_id) if self.worker_id else None,
                    "trace_id": self.trace_id,
                },
            )
        return self._logger

    @property
    def cancel_requested(self) -> bool:
        """True once somebody asked to cancel this task; a long handler should check it."""
        return self._cancel.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise :class:`~taskrt.exceptions.TaskCancelled` if cancellation was requested."""
        if self._cancel.is_set():
            raise TaskCancelled(f"task {self.task_id} was cancelled")

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block up to ``timeout`` seconds for a cancellation request; True if one came."""
        return self._cancel.wait(timeout)

    def time_left(self) -> float | None:
        """Seconds until this run's timeout, or ``None`` if it has none."""
        if self.timeout is None:
            return None
        return max(self.timeout - (time.monotonic() - self.started_monotonic), 0.0)

    def request_cancel(self) -> None:
        """Mark this run as asked to cancel (called by the worker, not by handlers)."""
        self._cancel.set()
