"""Every hook a taskrt plugin can implement.

A plugin is a module (or object) with functions decorated by ``taskrt.hookimpl`` and named after
these specs, exposed through an entry point in the ``taskrt`` group::

    [project.entry-points.taskrt]
    acme = "acme_taskrt.plugin"

Hooks take named arguments only, so adding an argument later breaks no plugin; an
implementation may accept any subset of them. Discovery hooks (``register_*``) receive a
``register`` callable owned by the core, which validates what it is given and remembers which
plugin registered it. Observer hooks (``before_*``/``after_*``, ``on_*``, ``worker_*``) are told
what happened; one that raises is logged with its traceback and counted, and never breaks a task.

The observer hooks are taskrt's events: each is emitted exactly once, from one place (see
docs/concepts/events.md). taskrt's own metrics and log lines are plugins too: they implement the
batch events (``on_tasks_created``, ``on_runs_finished``, ``on_runs_lost``,
``on_schedule_fired``) and are called before any other plugin (:mod:`taskrt.subscribers`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from taskrt.auth import AuthBackendFactory
    from taskrt.context import TaskContext
    from taskrt.handlers import TaskType
    from taskrt.records import (
        DeadLetterEvent,
        EnqueueRequest,
        ExecutionOutcome,
        LostRun,
        RetryEvent,
        RunFinish,
        ScheduleFire,
        TaskInsert,
        TaskRecord,
        WorkerInfo,
    )
    from taskrt.retry import RetryStrategyFactory
    from taskrt.settings import PluginSettings

PROJECT_NAME = "taskrt"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- discovery ----------------------------------------------------------------------------


@hookspec
def register_task_handlers(register: Callable[[TaskType[Any]], None]) -> None:
    """Register task types: call ``register(task_type)`` once for each ``@taskrt.task``."""


@hookspec
def register_retry_strategies(register: Callable[[str, RetryStrategyFactory], None]) -> None:
    """Register retry strategies: call ``register(name, factory)``; the factory gets the params."""


@hookspec
def register_auth_backends(register: Callable[[str, AuthBackendFactory], None]) -> None:
    """Register auth backends: call ``register(name, factory)``; the factory gets an AuthContext."""


@hookspec
def register_settings(register: Callable[[str, type[PluginSettings]], None]) -> None:
    """Register settings sections: call ``register(name, model)`` with a ``PluginSettings``
    subclass whose ``env_prefix`` is ``TASKRT_<NAME>_``; its fields are read like core settings
    (``TASKRT_<NAME>_<FIELD>``, the file key ``<name>_<field>``) and checked at start."""


@hookspec
def register_commands(cli: click.Group) -> None:
    """Add click commands or groups to the ``taskrt`` command line."""


# --- producing ----------------------------------------------------------------------------


@hookspec
def before_enqueue(request: EnqueueRequest) -> None:
    """A validated task is about to be stored (observe only; raising does not stop it)."""


@hookspec
def after_enqueue(task: TaskRecord, created: bool) -> None:
    """A task was stored (``created=False``: a live task with the same dedup key was returned)."""


@hookspec
def on_tasks_created(tasks: Sequence[TaskInsert]) -> None:
    """Tasks were created and committed (one call per enqueue batch or scheduler tick).

    Called in the process that created them, after the commit and the dispatch and before
    ``after_enqueue``; a dedup hit created nothing and is not among ``tasks``."""


@hookspec
def on_schedule_fired(fires: Sequence[ScheduleFire]) -> None:
    """A scheduler tick fired these slots, each creating one task (after the commit)."""


# --- executing ----------------------------------------------------------------------------


@hookspec
def before_execute(ctx: TaskContext, payload: Any) -> None:
    """A worker is about to call a handler for the run ``ctx`` describes."""


@hookspec
def after_execute(ctx: TaskContext, outcome: ExecutionOutcome) -> None:
    """A handler returned, raised, timed out or was cancelled; ``outcome`` says which."""


@hookspec
def on_runs_finished(
    finishes: Sequence[RunFinish],
    ran_seconds: Mapping[uuid.UUID, float | None],
    worker_id: uuid.UUID,
) -> None:
    """The store accepted these run outcomes (one call per batch a worker wrote).

    Called on the worker's finisher thread, once the batch is committed, before the
    ``on_retry``/``on_dead_letter`` calls it causes. ``ran_seconds`` says how long each handler
    ran, by run id (None or absent: it never started). An outcome the store rejected (the lease
    was taken over) is not among ``finishes``."""


@hookspec
def on_runs_lost(lost: Sequence[LostRun]) -> None:
    """A maintenance pass ended these runs ``lost`` (their worker stopped renewing the lease).

    Called on the maintenance thread of the worker whose pass reaped them, before the
    ``on_retry``/``on_dead_letter`` calls their losses cause."""


@hookspec
def on_retry(event: RetryEvent) -> None:
    """A failed or lost run was followed by a new attempt."""


@hookspec
def on_dead_letter(event: DeadLetterEvent) -> None:
    """A task gave up and went to its queue's dead-letter queue."""


@hookspec
def worker_startup(worker: WorkerInfo) -> None:
    """A worker registered itself and is about to fetch its first task."""


@hookspec
def worker_shutdown(worker: WorkerInfo) -> None:
    """A worker finished draining and is about to exit."""
