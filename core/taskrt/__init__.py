"""taskrt: a plugin-based distributed task runtime.

Importing taskrt connects to nothing, creates no file and loads no plugin. The names below are
the public API; heavier ones (the clients, the runtime) are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskrt._version import __version__
from taskrt.context import TaskContext
from taskrt.exceptions import (
    NonRetryableError,
    Retry,
    TaskCancelled,
    TaskrtError,
)
from taskrt.handlers import TaskType, task
from taskrt.handlers import set_default_enqueuer as _set_default_enqueuer
from taskrt.hookspecs import hookimpl, hookspec
from taskrt.records import RunRecord, RunStatus, TaskRecord, TaskStatus
from taskrt.retry import DelayStrategy, Failure, RetryDecision, RetryStrategy
from taskrt.settings import Settings, load_settings

if TYPE_CHECKING:
    from taskrt.client import AsyncClient, Client
    from taskrt.enqueue import EnqueueResult
    from taskrt.runtime import Runtime

__all__ = [
    "AsyncClient",
    "Client",
    "DelayStrategy",
    "EnqueueResult",
    "Failure",
    "NonRetryableError",
    "Retry",
    "RetryDecision",
    "RetryStrategy",
    "RunRecord",
    "RunStatus",
    "Runtime",
    "Settings",
    "TaskCancelled",
    "TaskContext",
    "TaskRecord",
    "TaskStatus",
    "TaskType",
    "TaskrtError",
    "__version__",
    "hookimpl",
    "hookspec",
    "load_settings",
    "task",
]

_LAZY = {
    "AsyncClient": "taskrt.client",
    "Client": "taskrt.client",
    "EnqueueResult": "taskrt.enqueue",
    "Runtime": "taskrt.runtime",
}


def _default_client() -> Client:
    """The client ``task_type.enqueue(...)`` uses when given none (imported on first use)."""
    from taskrt.client import default_client

    return default_client()


# The package, which sits above every layer, tells the handlers module (near the bottom) where
# the default client is, so that module never imports the client (see taskrt.handlers).
_set_default_enqueuer(_default_client)


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'taskrt' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
