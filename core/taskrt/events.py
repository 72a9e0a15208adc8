"""Emitting taskrt's domain events: the one place each is sent through the plugin manager.

The service, the scheduler, the worker's finisher and its maintenance loop each hold an
:class:`Events` and call it once, after the store committed what the event reports. Every event
goes to the observer hooks of :mod:`taskrt.hookspecs`, in the order plugins were registered:
taskrt's own metrics and log lines first (:mod:`taskrt.subscribers`), then third-party plugins.
The retry and dead-letter events are built here and only here, from a written outcome or from a
lost run. What each event means and carries: docs/concepts/events.md.

``before_execute``/``after_execute`` are the exception: they run on the handler's own thread,
around the handler, and stay with :class:`taskrt.worker.execution.RunExecutor`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from taskrt.plugins import Observers
from taskrt.records import (
    DeadLetterEvent,
    LostRun,
    RetryEvent,
    RunFinish,
    ScheduleFire,
    TaskInsert,
)


def retry_after_failure(finish: RunFinish) -> RetryEvent | None:
    """The retry a written failure scheduled, or None if it scheduled none."""
    if finish.status != "failed" or finish.retry_delay is None:
        return None
    assert finish.next_run_id is not None
    run = finish.run
    return RetryEvent(
        task_id=run.task_id,
        task_name=run.name,
        queue=run.queue,
        failed_run_id=run.run_id,
        attempt=run.attempt,
        next_run_id=finish.next_run_id,
        delay=finish.retry_delay,
        reason=finish.reason or "error",
        error_type=finish.error_type,
        error_message=finish.error_message,
    )


def dead_letter_after_failure(finish: RunFinish) -> DeadLetterEvent | None:
    """The dead letter a written failure caused, or None if it caused none."""
    if not finish.dead_letters:
        return None
    run = finish.run
    return DeadLetterEvent(
        task_id=run.task_id,
        task_name=run.name,
        queue=run.queue,
        run_id=run.run_id,
        attempt=run.attempt,
        reason=finish.reason or "retries_exhausted",
        error_type=finish.error_type,
        error_message=finish.error_message,
    )


def retry_after_loss(lost: LostRun) -> RetryEvent | None:
    """The retry that followed a lost run, or None if none did."""
    if lost.next_run is None:
        return None
    return RetryEvent(
        task_id=lost.task_id,
        task_name=lost.task_name,
        queue=lost.queue,
        failed_run_id=lost.run_id,
        attempt=lost.attempt,
        next_run_id=lost.next_run.run_id,
        delay=0.0,
        reason="lost",
    )


def dead_letter_after_loss(lost: LostRun) -> DeadLetterEvent | None:
    """The dead letter a lost run caused (its poison budget spent), or None."""
    if lost.outcome != "dead_letter":
        return None
    return DeadLetterEvent(
        task_id=lost.task_id,
        task_name=lost.task_name,
        queue=lost.queue,
        run_id=lost.run_id,
        attempt=lost.attempt,
        reason="lost",
    )


class Events:
    """Sends domain events to every plugin that listens, skipping the work when none does."""

    def __init__(self, observers: Observers) -> None:
        self.observers = observers

    def tasks_created(self, tasks: Sequence[TaskInsert]) -> None:
        """Tasks were created and committed (dedup hits left out by the caller)."""
        if tasks and self.observers.has("on_tasks_created"):
            self.observers.notify("on_tasks_created", tasks=tasks)

    def schedule_fired(self, fires: Sequence[ScheduleFire]) -> None:
        """A scheduler tick fired ``fires`` and committed them."""
        if fires and self.observers.has("on_schedule_fired"):
            self.observers.notify("on_schedule_fired", fires=fires)

    def runs_finished(
        self,
        finishes: Sequence[RunFinish],
        ran_seconds: Mapping[uuid.UUID, float | None],
        worker_id: uuid.UUID,
    ) -> None:
        """The store accepted ``finishes``: the batch event, then each retry and dead letter."""
        if not finishes:
            return
        observers = self.observers
        if observers.has("on_runs_finished"):
            observers.notify(
                "on_runs_finished", finishes=finishes, ran_seconds=ran_seconds, worker_id=worker_id
            )
        retries, dead = observers.has("on_retry"), observers.has("on_dead_letter")
        if not (retries or dead):
            return
        for finish in finishes:
            if finish.status != "failed":
                continue
            retry = retry_after_failure(finish) if retries else None
            if retry is not None:
                observers.notify("on_retry", event=retry)
                continue
            dead_letter = dead_letter_after_failure(finish) if dead else None
            if dead_letter is not None:
                observers.notify("on_dead_letter", event=dead_letter)

    def runs_lost(self, lost: Sequence[LostRun]) -> None:
        """A maintenance pass ended ``lost`` runs: the batch event, then each retry and dead
        letter that followed."""
        if not lost:
            return
        observers = self.observers
        if observers.has("on_runs_lost"):
            observers.notify("on_runs_lost", lost=lost)
        retries, dead = observers.has("on_retry"), observers.has("on_dead_letter")
        if not (retries or dead):
            return
        for run in lost:
            retry = retry_after_loss(run) if retries else None
            if retry is not None:
                observers.notify("on_retry", event=retry)
                continue
            dead_letter = dead_letter_after_loss(run) if dead else None
            if dead_letter is not None:
                observers.notify("on_dead_letter", event=dead_letter)
