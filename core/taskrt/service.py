"""The service layer: the only place that creates, cancels and replays tasks.

The CLI, the Python client, the HTTP API and the scheduler all call this module; it validates
input against the registry, writes the store in one transaction, then dispatches to the queue
backend. A dispatch that fails (Redis down) loses nothing: the outbox relay sends it later.
After the commit it emits "tasks created" and tells ``after_enqueue`` observers, for every
producer, scheduled fires included (docs/concepts/events.md).
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from taskrt import limits
from taskrt.enqueue import (
    FINISHED_STATUSES,
    EnqueueResult,
    EnqueueSpec,
    ReplayResult,
    input_problems,
    request_view,
    run_at_problem,
)
from taskrt.events import Events
from taskrt.exceptions import BatchValidationError, InvalidStateError, ValidationError
from taskrt.handlers import check_queue_name
from taskrt.ids import uuid7
from taskrt.queue.base import QueueBackend
from taskrt.records import (
    Actor,
    DispatchEntry,
    Enqueued,
    QueueCounts,
    TaskInsert,
    TaskRecord,
    WorkerInfo,
)
from taskrt.runtime import Runtime
from taskrt.store import Store
from taskrt.store.search import TaskSearch

__all__ = [
    "FINISHED_STATUSES",
    "EnqueueResult",
    "EnqueueSpec",
    "ReplayResult",
    "TaskService",
    "input_problems",
    "run_at_problem",
]

log = logging.getLogger("taskrt.service")

# The bounds themselves live in taskrt.limits; these names are the service's view of them.
MAX_DEDUP_KEY = limits.DEDUP_KEY_MAX
MAX_TRACE_ID = limits.TRACE_ID_MAX
MAX_RETRIES_LIMIT = limits.MAX_RETRIES_LIMIT
MAX_BATCH = limits.SERVICE_BATCH_MAX
MAX_DELAY = limits.SERVICE_DELAY_MAX


def _problem(loc: list[Any], msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg}


class TaskService:
    """Creates, reads, cancels and replays tasks; pauses and resumes queues."""

    def __init__(self, runtime: Runtime, store: Store, backend: QueueBackend) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.registry = runtime.registry
        self.store = store
        self.backend = backend
        self.events = Events(runtime.observers)
        # task types whose own retry strategy and parameters have been built once without
        # error: a task that keeps them needs no second check (the registry never changes)
        self._default_retry_ok: set[str] = set()

    def close(self) -> None:
        """Release connections (the backend first: it flushes its pending outbox deletes)."""
        self.backend.close()
        self.store.dispose()

    # --- validation -----------------------------------------------------------------------
    def prepare(self, spec: EnqueueSpec, *, loc: tuple[Any, ...] = ()) -> TaskInsert:
        """Validate ``spec`` against its task type and settings; ValidationError lists every
        problem with its field path."""
        unstorable = input_problems(spec, loc, max_depth=self.settings.max_json_depth)
        refused = {p["loc"][len(loc)] for p in unstorable}  # the fields with such problems
        if "name" in refused:
            raise ValidationError(f"task name refused: {unstorable[0]['msg']}", unstorable)
        task_type = self.registry.task_type(spec.name)
        problems: list[dict[str, Any]] = unstorable
        payload = None
        try:
            if "payload" in refused:
                raise ValidationError("payload refused")  # already reported; nothing to add
            payload = task_type.validate_payload(spec.payload)
            size = len(json.dumps(payload, separators=(",", ":")))
            if size > self.settings.max_payload_bytes:
                problems.append(
                    _problem(
                        [*loc, "payload"],
                        f"payload is {size} bytes as JSON; the limit is "
                        f"{self.settings.max_payload_bytes}",
                    )
                )
        except ValidationError as exc:
            problems.extend({**e, "loc": [*loc, *e.get("loc", ())]} for e in exc.errors)
        queue = spec.queue or task_type.queue or self.settings.default_queue
        try:
            check_queue_name(queue)
        except ValidationError as exc:
            problems.append(_problem([*loc, "queue"], str(exc)))
        delay = 0.0
        if spec.delay is not None:
            if spec.run_at is not None:
                problems.append(_problem([*loc, "delay"], "give delay or run_at, not both"))
            elif not isinstance(spec.delay, int | float) or isinstance(spec.delay, bool):
                problems.append(_problem([*loc, "delay"], "delay must be a number of seconds"))
            elif not math.isfinite(spec.delay) or not 0 <= spec.delay <= MAX_DELAY:
                problems.append(
                    _problem(
                        [*loc, "delay"],
                        f"delay must be >= 0 and <= {MAX_DELAY:.0f} seconds (100 years), "
                        f"got {spec.delay}",
                    )
                )
            else:
                delay = float(spec.delay)
        if spec.run_at is not None:
            why = run_at_problem(spec.run_at)
            if why is not None:
                problems.append(_problem([*loc, "run_at"], why))
        if spec.dedup_key is not None and (
            not isinstance(spec.dedup_key, str) or not 0 < len(spec.dedup_key) <= MAX_DEDUP_KEY
        ):
            problems.append(
                _problem([*loc, "dedup_key"], f"dedup_key must be 1 to {MAX_DEDUP_KEY} characters")
            )
        max_retries = task_type.max_retries if spec.max_retries is None else spec.max_retries
        if (
            not isinstance(max_retries, int)
            or isinstance(max_retries, bool)
            or not (0 <= max_retries <= MAX_RETRIES_LIMIT)
        ):
            problems.append(
                _problem([*loc, "max_retries"], f"max_retries must be 0 to {MAX_RETRIES_LIMIT}")
            )
        retry = spec.retry or task_type.retry
        if spec.retry_params is not None:
            retry_params = dict(spec.retry_params)
        else:
            retry_params = dict(task_type.retry_params) if retry == task_type.retry else {}
        uses_default = spec.retry is None and spec.retry_params is None
        if not (uses_default and task_type.name in self._default_retry_ok) and (
            "retry_params" not in refused
        ):
            try:
                self.registry.retry_strategy(retry, retry_params)
            except ValidationError as exc:
                problems.extend({**e, "loc": [*loc, *e["loc"]]} for e in exc.errors)
            else:
                if uses_default:
                    self._default_retry_ok.add(task_type.name)
        timeout = task_type.timeout if spec.timeout is None else spec.timeout
        if timeout is not None and (not isinstance(timeout, int | float) or timeout <= 0):
            problems.append(_problem([*loc, "timeout"], "timeout must be > 0 seconds"))
        priority = task_type.priority if spec.priority is None else spec.priority
        if (
            not isinstance(priority, int)
            or isinstance(priority, bool)
            or not (limits.PRIORITY_MIN <= priority <= limits.PRIORITY_MAX)
        ):
            problems.append(
                _problem([*loc, "priority"], "priority must be an integer in -32768..32767")
            )
        if spec.trace_id is not None and len(spec.trace_id) > MAX_TRACE_ID:
            problems.append(_problem([*loc, "trace_id"], f"trace_id is longer than {MAX_TRACE_ID}"))
        if problems:
            detail = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems)
            raise ValidationError(f"task {spec.name!r} was refused: {detail}", problems)
        return TaskInsert(
            id=uuid7(),
            run_id=uuid7(),
            name=task_type.name,
            queue=queue,
            payload=payload,
            max_retries=max_retries,
            retry=retry,
            retry_params=retry_params,
            timeout=None if timeout is None else float(timeout),
            priority=priority,
            dedup_key=spec.dedup_key,
            trace_id=spec.trace_id,
            delay=delay,
            run_at=spec.run_at,
        )

    def prepare_many(self, specs: Sequence[EnqueueSpec]) -> list[TaskInsert]:
        """Validate every spec (storing nothing). A BatchValidationError lists every problem,
        each ``loc`` starting with its item's index, and keeps each refused item's own error in
        ``items``, so callers name the item without checking it again."""
        items: list[TaskInsert] = []
        problems: list[dict[str, Any]] = []
        refused: list[tuple[int, ValidationError]] = []
        for index, spec in enumerate(specs):
            try:
                items.append(self.prepare(spec))
            except ValidationError as exc:
                refused.append((index, exc))
                problems.extend(
                    [{**e, "loc": [index, *e.get("loc", ())]} for e in exc.errors]
                    or [_problem([index], str(exc))]
                )
        if problems:
            detail = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems[:10])
            raise BatchValidationError(
                f"{len(problems)} problem(s) in the batch, nothing stored: {detail}",
                problems,
                refused,
            )
        return items

    # --- create ---------------------------------------------------------------------------
    def enqueue(self, spec: EnqueueSpec, *, actor: Actor | None = None) -> EnqueueResult:
        """Create one task (or return the live task holding its dedup key)."""
        return self.enqueue_many([spec], actor=actor)[0]

    def enqueue_many(
        self, specs: Sequence[EnqueueSpec], *, actor: Actor | None = None
    ) -> list[EnqueueResult]:
        """Create tasks in one transaction and one dispatch pipeline: all or nothing.

        A batch of one raises its item's own ValidationError; a longer one reports every
        invalid item at once (see :meth:`prepare_many`).
        """
        if len(specs) > MAX_BATCH:
            raise ValidationError(f"at most {MAX_BATCH} tasks per batch, got {len(specs)}")
        items = [self.prepare(specs[0])] if len(specs) == 1 else self.prepare_many(specs)
        self._before_enqueue(items)
        return self.enqueued(items, self.store.insert_tasks(items, actor=actor))

    def enqueue_in(
        self, conn: Connection, items: Sequence[TaskInsert], *, actor: Actor | None = None
    ) -> list[Enqueued]:
        """Store prepared tasks inside the caller's transaction ``conn`` (a scheduled fire
        writes its fire row and its task together): ``before_enqueue`` observers are told,
        then the tasks are inserted. Call :meth:`enqueued` once the transaction committed."""
        self._before_enqueue(items)
        return self.store.insert_tasks_in(conn, items, actor=actor)

    def enqueued(
        self, items: Sequence[TaskInsert], outcomes: Sequence[Enqueued]
    ) -> list[EnqueueResult]:
        """After the commit of ``items``: dispatch their runs, then emit "tasks created" and
        tell ``after_enqueue`` observers (the one place both happen for every producer)."""
        self.dispatch([o.dispatch for o in outcomes if o.dispatch is not None])
        results = [
            EnqueueResult(id=o.task_id, created=o.created, name=item.name, queue=item.queue)
            for o, item in zip(outcomes, items, strict=True)
        ]
        self.events.tasks_created(
            [item for o, item in zip(outcomes, items, strict=True) if o.created]
        )
        observers = self.runtime.observers
        if observers.has("after_enqueue"):
            records = self.store.get_tasks([r.id for r in results])
            for result in results:
                observers.notify("after_enqueue", task=records[result.id], created=result.created)
        return results

    def _before_enqueue(self, items: Sequence[TaskInsert]) -> None:
        observers = self.runtime.observers
        if observers.has("before_enqueue"):
            for item in items:
                observers.notify("before_enqueue", request=request_view(item))

    def dispatch(self, entries: Sequence[DispatchEntry]) -> None:
        """Hand committed queued runs to the queue backend; on failure the relay sends them."""
        if not entries:
            return
        try:
            self.backend.dispatch(entries)
        except Exception as exc:  # the outbox relay will dispatch them: nothing is lost
            log.warning(
                "dispatch of %d run(s) failed (%s); the outbox relay will send them",
                len(entries),
                exc,
            )
            return

    # --- read -----------------------------------------------------------------------------
    def get(self, task_id: uuid.UUID, *, runs: bool = True) -> TaskRecord:
        """The task and all its runs."""
        return self.store.get_task(task_id, runs=runs)

    def list_tasks(self, search: TaskSearch | None = None, **filters: Any) -> list[TaskRecord]:
        """Tasks newest first matching ``search`` and the filters given as keywords, with
        ``limit`` and ``before`` (see :meth:`taskrt.store.Store.list_tasks`)."""
        return self.store.list_tasks(search, **filters)

    # --- cancel ---------------------------------------------------------------------------
    def cancel(self, task_id: uuid.UUID, *, actor: Actor | None = None) -> TaskRecord:
        """Cancel a task: a queued one never runs; a running one is asked to stop."""
        record, withdrawn = self.store.cancel_task(task_id, actor=actor)
        if withdrawn is not None:
            try:
                self.backend.withdraw([withdrawn])
            except Exception as exc:  # the claim is fenced anyway; the entry is dropped later
                log.warning("could not withdraw run %s from its queue: %s", withdrawn.run_id, exc)
        return record

    # --- dead-letter queue ----------------------------------------------------------------
    def dead_letters(
        self, queue: str, *, limit: int = 50, before: uuid.UUID | None = None
    ) -> list[TaskRecord]:
        """Dead-lettered tasks of ``queue``, newest first, each with its last run."""
        check_queue_name(queue)
        return self.store.dead_letters(queue, limit=limit, before=before)

    def replay(
        self,
        queue: str | None,
        task_ids: Sequence[uuid.UUID] | None = None,
        *,
        replay_all: bool = False,
        actor: Actor | None = None,
        batch_size: int = 500,
        progress: Callable[[int], None] | None = None,
    ) -> ReplayResult:
        """Give dead-lettered tasks a new run: ``task_ids`` (of ``queue``, or of any queue when
        it is None), or every one of ``queue`` with ``replay_all``.

        Tasks that are not dead-lettered (in that queue) any more are reported as skipped.
        """
        if queue is not None:
            check_queue_name(queue)
        if (task_ids is None) == (not replay_all):
            raise ValidationError("give task ids or replay_all=True, not both and not neither")
        if replay_all and queue is None:
            raise ValidationError("replaying every dead-lettered task needs a queue")
        result = ReplayResult()

        def replay_batch(batch: Sequence[uuid.UUID]) -> None:
            won = self._replay(queue, batch, actor=actor)
            won_set = set(won)
            result.replayed.extend(won)
            result.skipped.extend(t for t in batch if t not in won_set)
            if progress is not None:
                progress(len(batch))

        if replay_all:
            assert queue is not None
            while True:
                batch = self.store.failed_task_ids(queue, limit=batch_size)
                if not batch:
                    break
                replay_batch(batch)
                if not set(batch) & set(result.replayed):
                    break  # nothing in this page could be replayed: stop instead of spinning
        else:
            ids = list(dict.fromkeys(task_ids or ()))
            for start in range(0, len(ids), batch_size):
                replay_batch(ids[start : start + batch_size])
        return result

    def rerun(self, task_id: uuid.UUID, *, actor: Actor | None = None) -> TaskRecord:
        """Run a finished task again: a new run with a fresh retry budget, whatever the task's
        end (completed, failed or cancelled). A task that is not finished is refused."""
        won = self._replay(
            None, [task_id], actor=actor, statuses=FINISHED_STATUSES, action="task.retry"
        )
        if not won:
            task = self.store.get_task(task_id, runs=False)  # NotFoundError if none
            raise InvalidStateError(
                f"task {task_id} is {task.status.value}: only a finished task (completed, "
                "failed or cancelled) can be run again"
            )
        return self.store.get_task(task_id)

    def _replay(
        self,
        queue: str | None,
        task_ids: Sequence[uuid.UUID],
        *,
        actor: Actor | None,
        statuses: Sequence[str] = ("failed",),
        action: str = "dlq.replay",
    ) -> list[uuid.UUID]:
        won, entries = self.store.replay_tasks(
            queue,
            task_ids,
            actor=actor,
            statuses=statuses,
            action=action,
        )
        if not won:
            return won
        try:
            by_queue: dict[str, tuple[list[uuid.UUID], list[DispatchEntry]]] = {}
            for task_id, entry in zip(won, entries, strict=True):
                ids, queued = by_queue.setdefault(entry.queue, ([], []))
                ids.append(task_id)
                queued.append(entry)
            for name, (ids, queued) in by_queue.items():
                self.backend.replayed(name, ids, queued)
        except Exception as exc:  # the relay dispatches; reconcile fixes the list
            log.warning("replay dispatch failed (%s); the outbox relay will send it", exc)
        return won

    # --- queues and workers ---------------------------------------------------------------
    def pause(self, queue: str, *, actor: Actor | None = None) -> None:
        """Pause ``queue``: workers stop fetching from it; running tasks go on."""
        check_queue_name(queue)
        self.store.set_paused(queue, True, actor=actor)
        self.backend.pause(queue)

    def resume(self, queue: str, *, actor: Actor | None = None) -> None:
        """Resume a paused queue."""
        check_queue_name(queue)
        self.store.set_paused(queue, False, actor=actor)
        self.backend.resume(queue)

    def queues(self) -> list[QueueCounts]:
        """Counts for every known queue."""
        names = sorted(set(self.store.known_queues()) | {c.name for c in self.backend.counts()})
        return self.backend.counts(names)

    def workers(self, *, include_offline: bool = True) -> list[WorkerInfo]:
        """Registered workers, newest first."""
        return self.store.list_workers(include_offline=include_offline)
