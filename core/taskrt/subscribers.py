"""taskrt's own metrics and log lines, as plugins of its events.

They implement the batch events of :mod:`taskrt.hookspecs` like any third-party plugin would,
registered by :func:`taskrt.plugins.load_plugins`; their implementations are ``tryfirst``, so a
process counts and logs an event before third-party observers hear of it. They are not listed
among the loaded plugins (``taskrt plugins``) and cannot be disabled: the reference of metrics
and log lines describes them.

The metric names, labels and values and the log lines are those of :mod:`taskrt.metrics` and
:mod:`taskrt.logs`; the log lines keep the logger of the process part that reports the event
(``taskrt.worker`` for outcomes, ``taskrt.maintenance`` for lost runs, ``taskrt.scheduler``
for fires).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence

from taskrt import logs, metrics
from taskrt.hookspecs import hookimpl
from taskrt.records import LostRun, RunFinish, ScheduleFire, TaskInsert

outcome_log = logging.getLogger("taskrt.worker")
lost_log = logging.getLogger("taskrt.maintenance")
fire_log = logging.getLogger("taskrt.scheduler")


class MetricsSubscriber:
    """Counts created tasks, written outcomes, lost runs and schedule fires."""

    @hookimpl(tryfirst=True)
    def on_tasks_created(self, tasks: Sequence[TaskInsert]) -> None:
        """``taskrt_tasks_created``."""
        metrics.tasks_created((task.tenant, task.queue, task.name) for task in tasks)

    @hookimpl(tryfirst=True)
    def on_runs_finished(
        self, finishes: Sequence[RunFinish], ran_seconds: Mapping[uuid.UUID, float | None]
    ) -> None:
        """``taskrt_runs_finished``, ``taskrt_retries``, ``taskrt_dead_lettered``, start
        latency and duration."""
        metrics.record_finishes(finishes, ran_seconds)

    @hookimpl(tryfirst=True)
    def on_runs_lost(self, lost: Sequence[LostRun]) -> None:
        """``taskrt_runs_finished`` (outcome ``lost``) and the retries and dead letters."""
        metrics.runs_lost(lost)

    @hookimpl(tryfirst=True)
    def on_schedule_fired(self, fires: Sequence[ScheduleFire]) -> None:
        """``taskrt_scheduler_fires`` and ``taskrt_scheduler_fire_lag_seconds``."""
        metrics.schedule_fired(
            (fire.tenant, fire.queue, fire.task_name, fire.lag) for fire in fires
        )


class LogSubscriber:
    """Writes the lines about written outcomes, lost runs and schedule fires."""

    @hookimpl(tryfirst=True)
    def on_runs_finished(self, finishes: Sequence[RunFinish], worker_id: uuid.UUID) -> None:
        """A line per retry, dead letter and cancellation, and per success in text logs."""
        logs.log_outcomes(outcome_log, finishes, worker_id)

    @hookimpl(tryfirst=True)
    def on_runs_lost(self, lost: Sequence[LostRun]) -> None:
        """A WARNING per lost run, saying what follows."""
        logs.log_lost(lost_log, lost)

    @hookimpl(tryfirst=True)
    def on_schedule_fired(self, fires: Sequence[ScheduleFire]) -> None:
        """An INFO line per fire."""
        for fire in fires:
            fire_log.info(
                "schedule %s fired slot %s as task %s",
                fire.schedule_id,
                fire.fire_at.isoformat(),
                fire.task_id,
            )


BUILTIN_SUBSCRIBERS: tuple[tuple[str, type], ...] = (
    ("taskrt.metrics", MetricsSubscriber),
    ("taskrt.logs", LogSubscriber),
)
"""The built-in plugins, by the name they are registered under, in the order they are called
(their implementations are ``tryfirst``, so they run before every other plugin's)."""
