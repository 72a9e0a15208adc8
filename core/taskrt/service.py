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
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection

from taskrt import limits
from taskrt.auth import KnownTenants
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
from taskrt.exceptions import (
    BatchValidationError,
    InvalidStateError,
    UnknownTenantError,
    ValidationError,
)
from taskrt.handlers import check_queue_name
from taskrt.ids import uuid7
from taskrt.queue.base import QueueBackend
from taskrt.records import (
    DEFAULT_TENANT,
    Actor,
    DispatchEntry,
    Enqueued,
    QueueCounts,
    TaskInsert,
    TaskRecord,
    WorkerInfo,
    address,
    split_address,
)
from taskrt.runtime import Runtime
from taskrt.settings import Settings
from taskrt.store import Store
from taskrt.store.search import TaskSearch

__all__ = [
    "FINISHED_STATUSES",
    "EnqueueResult",
    "EnqueueSpec",
    "ReplayResult",
    "TaskService",
    "TenantTasks",
    "check_tenant_name",
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


TENANT_CACHE_TTL = 5.0
"""Seconds the service trusts its list of existing tenants before reading it again."""

_TENANT_NAME = re.compile(limits.TENANT_NAME_PATTERN)


def _problem(loc: list[Any], msg: str) -> dict[str, Any]:
    return {"loc": loc, "msg": msg}


def check_tenant_name(tenant: str) -> str:
    """``tenant`` if it is a well-formed tenant name, else ValidationError naming the rule."""
    if not isinstance(tenant, str) or not _TENANT_NAME.match(tenant):
        raise ValidationError(
            f"tenant {tenant!r} is not a tenant name: 1 to {limits.TENANT_NAME_MAX} lower-case "
            "letters, digits, '_' or '-', starting with a letter or digit",
            [{"loc": ["tenant"], "msg": "not a tenant name"}],
        )
    return tenant


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
        self._tenants = KnownTenants(store, ttl=TENANT_CACHE_TTL)

    def scoped(
        self, tenant: str = DEFAULT_TENANT, *, operator: bool = False, check: bool = True
    ) -> TenantTasks:
        """This service bound to ``tenant``: what programs (the API, the CLI, the client) use,
        so that nothing they do reaches another tenant's tasks. ``operator`` lets the scope
        list workers and audit rows of every tenant. UnknownTenantError if no such tenant
        exists (``check=False``: the caller knows it does, as the API does for a credential's
        tenant, so no lookup is made)."""
        return TenantTasks(self, self.check_tenant(tenant) if check else tenant, operator=operator)

    def check_tenant(self, tenant: str) -> str:
        """``tenant`` if it exists: ValidationError for a malformed name, UnknownTenantError
        for an unknown one."""
        if tenant == DEFAULT_TENANT:
            return tenant
        check_tenant_name(tenant)
        if not self._tenants.exists(tenant):
            raise UnknownTenantError(tenant)
        return tenant

    def close(self) -> None:
        """Release connections (the backend first: it flushes its pending outbox deletes)."""
        self.backend.close()
        self.store.dispose()

    # --- validation -----------------------------------------------------------------------
    def prepare(
        self, spec: EnqueueSpec, *, loc: tuple[Any, ...] = (), tenant: str = DEFAULT_TENANT
    ) -> TaskInsert:
        """Validate ``spec`` against its task type and settings; ValidationError lists every
        problem with its field path. The task belongs to ``tenant`` (a spec cannot choose its
        tenant: the caller's scope does)."""
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
            tenant=tenant,
        )

    def prepare_many(
        self, specs: Sequence[EnqueueSpec], *, tenant: str = DEFAULT_TENANT
    ) -> list[TaskInsert]:
        """Validate every spec (storing nothing). A BatchValidationError lists every problem,
        each ``loc`` starting with its item's index, and keeps each refused item's own error in
        ``items``, so callers name the item without checking it again."""
        items: list[TaskInsert] = []
        problems: list[dict[str, Any]] = []
        refused: list[tuple[int, ValidationError]] = []
        for index, spec in enumerate(specs):
            try:
                items.append(self.prepare(spec, tenant=tenant))
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
    def enqueue(
        self, spec: EnqueueSpec, *, actor: Actor | None = None, tenant: str = DEFAULT_TENANT
    ) -> EnqueueResult:
        """Create one task (or return the live task holding its dedup key)."""
        return self.enqueue_many([spec], actor=actor, tenant=tenant)[0]

    def enqueue_many(
        self,
        specs: Sequence[EnqueueSpec],
        *,
        actor: Actor | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> list[EnqueueResult]:
        """Create tasks in one transaction and one dispatch pipeline: all or nothing.

        A batch of one raises its item's own ValidationError; a longer one reports every
        invalid item at once (see :meth:`prepare_many`).
        """
        if len(specs) > MAX_BATCH:
            raise ValidationError(f"at most {MAX_BATCH} tasks per batch, got {len(specs)}")
        self.check_tenant(tenant)
        if len(specs) == 1:
            items = [self.prepare(specs[0], tenant=tenant)]
        else:
            items = self.prepare_many(specs, tenant=tenant)
        self._before_enqueue(items)
        quota = self.store.tenant_quota(tenant)  # None (the fast path) for most tenants
        return self.enqueued(items, self.store.insert_tasks(items, actor=actor, quota=quota))

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
            records: dict[uuid.UUID, TaskRecord] = {}
            for tenant in dict.fromkeys(item.tenant for item in items):
                ids = [r.id for r, i in zip(results, items, strict=True) if i.tenant == tenant]
                records.update(self._get_tasks(ids, tenant))
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
    def _get_tasks(self, ids: Sequence[uuid.UUID], tenant: str) -> dict[uuid.UUID, TaskRecord]:
        return self.store.get_tasks(ids, tenant=tenant)

    def get(
        self, task_id: uuid.UUID, *, runs: bool = True, tenant: str = DEFAULT_TENANT
    ) -> TaskRecord:
        """The task and all its runs (NotFoundError for another tenant's task)."""
        return self.store.get_task(task_id, runs=runs, tenant=tenant)

    def list_tasks(
        self, search: TaskSearch | None = None, *, tenant: str = DEFAULT_TENANT, **filters: Any
    ) -> list[TaskRecord]:
        """Tasks of ``tenant`` newest first matching ``search`` and the filters given as
        keywords, with ``limit`` and ``before`` (see :meth:`taskrt.store.Store.list_tasks`)."""
        search = replace(search or TaskSearch(), tenant=tenant)
        return self.store.list_tasks(search, **filters)

    def latest_runs(
        self, task_ids: Sequence[uuid.UUID], *, tenant: str = DEFAULT_TENANT
    ) -> dict[uuid.UUID, Any]:
        """The newest run of each of ``task_ids`` (ids of ``tenant``'s tasks, as a listing of
        this service returned them)."""
        return self.store.latest_runs(task_ids)

    # --- cancel ---------------------------------------------------------------------------
    def cancel(
        self, task_id: uuid.UUID, *, actor: Actor | None = None, tenant: str = DEFAULT_TENANT
    ) -> TaskRecord:
        """Cancel a task: a queued one never runs; a running one is asked to stop."""
        record, withdrawn = self.store.cancel_task(task_id, actor=actor, tenant=tenant)
        if withdrawn is not None:
            try:
                self.backend.withdraw([withdrawn])
            except Exception as exc:  # the claim is fenced anyway; the entry is dropped later
                log.warning("could not withdraw run %s from its queue: %s", withdrawn.run_id, exc)
        return record

    # --- dead-letter queue ----------------------------------------------------------------
    def dead_letters(
        self,
        queue: str,
        *,
        limit: int = 50,
        before: uuid.UUID | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> list[TaskRecord]:
        """Dead-lettered tasks of ``queue``, newest first, each with its last run."""
        check_queue_name(queue)
        return self.store.dead_letters(queue, limit=limit, before=before, tenant=tenant)

    def replay(
        self,
        queue: str | None,
        task_ids: Sequence[uuid.UUID] | None = None,
        *,
        replay_all: bool = False,
        actor: Actor | None = None,
        batch_size: int = 500,
        progress: Callable[[int], None] | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> ReplayResult:
        """Give dead-lettered tasks a new run: ``task_ids`` (of ``queue``, or of any queue when
        it is None), or every one of ``queue`` with ``replay_all``.

        Tasks that are not dead-lettered (in that queue) any more, and ids that are not
        ``tenant``'s, are reported as skipped.
        """
        if queue is not None:
            check_queue_name(queue)
        if (task_ids is None) == (not replay_all):
            raise ValidationError("give task ids or replay_all=True, not both and not neither")
        if replay_all and queue is None:
            raise ValidationError("replaying every dead-lettered task needs a queue")
        result = ReplayResult()

        def replay_batch(batch: Sequence[uuid.UUID]) -> None:
            won = self._replay(queue, batch, actor=actor, tenant=tenant)
            won_set = set(won)
            result.replayed.extend(won)
            result.skipped.extend(t for t in batch if t not in won_set)
            if progress is not None:
                progress(len(batch))

        if replay_all:
            assert queue is not None
            while True:
                batch = self.store.failed_task_ids(address(tenant, queue), limit=batch_size)
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

    def rerun(
        self, task_id: uuid.UUID, *, actor: Actor | None = None, tenant: str = DEFAULT_TENANT
    ) -> TaskRecord:
        """Run a finished task again: a new run with a fresh retry budget, whatever the task's
        end (completed, failed or cancelled). A task that is not finished is refused."""
        won = self._replay(
            None,
            [task_id],
            actor=actor,
            statuses=FINISHED_STATUSES,
            action="task.retry",
            tenant=tenant,
        )
        if not won:
            task = self.store.get_task(task_id, runs=False, tenant=tenant)  # NotFoundError
            raise InvalidStateError(
                f"task {task_id} is {task.status.value}: only a finished task (completed, "
                "failed or cancelled) can be run again"
            )
        return self.store.get_task(task_id, tenant=tenant)

    def _replay(
        self,
        queue: str | None,
        task_ids: Sequence[uuid.UUID],
        *,
        actor: Actor | None,
        statuses: Sequence[str] = ("failed",),
        action: str = "dlq.replay",
        tenant: str = DEFAULT_TENANT,
    ) -> list[uuid.UUID]:
        won, entries = self.store.replay_tasks(
            queue,
            task_ids,
            actor=actor,
            statuses=statuses,
            action=action,
            tenant=tenant,
        )
        if not won:
            return won
        try:
            by_queue: dict[str, tuple[list[uuid.UUID], list[DispatchEntry]]] = {}
            for task_id, entry in zip(won, entries, strict=True):
                ids, queued = by_queue.setdefault(entry.address, ([], []))
                ids.append(task_id)
                queued.append(entry)
            for name, (ids, queued) in by_queue.items():
                self.backend.replayed(name, ids, queued)
        except Exception as exc:  # the relay dispatches; reconcile fixes the list
            log.warning("replay dispatch failed (%s); the outbox relay will send it", exc)
        return won

    # --- queues and workers ---------------------------------------------------------------
    def pause(
        self, queue: str, *, actor: Actor | None = None, tenant: str = DEFAULT_TENANT
    ) -> None:
        """Pause ``queue`` of ``tenant``: workers stop fetching from it; running tasks go on.
        Another tenant's queue of the same name is another queue."""
        check_queue_name(queue)
        self.store.set_paused(queue, True, actor=actor, tenant=tenant)
        self.backend.pause(address(tenant, queue))

    def resume(
        self, queue: str, *, actor: Actor | None = None, tenant: str = DEFAULT_TENANT
    ) -> None:
        """Resume a paused queue of ``tenant``."""
        check_queue_name(queue)
        self.store.set_paused(queue, False, actor=actor, tenant=tenant)
        self.backend.resume(address(tenant, queue))

    def queues(self, *, tenant: str | None = None) -> list[QueueCounts]:
        """Counts for every known queue of ``tenant`` (None, the default for infrastructure
        such as the queue-depth gauges: of every tenant), by name; each carries its tenant and
        its bare name. The queue registry holds every tenant's
        addresses: only ``tenant``'s are read and shown."""
        known = set(self.store.known_queues()) | {_address_of(c) for c in self.backend.counts()}
        mine = sorted(a for a in known if tenant is None or split_address(a)[0] == tenant)
        counts = self.backend.counts(mine)
        out = []
        for addr, count in zip(mine, counts, strict=True):
            owner, name = split_address(addr)
            out.append(replace(count, name=name, tenant=owner))
        return out

    def workers(
        self, *, include_offline: bool = True, tenant: str | None = DEFAULT_TENANT
    ) -> list[WorkerInfo]:
        """Registered workers serving ``tenant`` (None: every worker), newest first."""
        return self.store.list_workers(include_offline=include_offline, tenant=tenant)


def _address_of(count: QueueCounts) -> str:
    """The address a backend's count stands for (its name is an address, or a bare name with
    the tenant beside it)."""
    if count.tenant != DEFAULT_TENANT and "/" not in count.name:
        return address(count.tenant, count.name)
    return count.name


@dataclass(frozen=True, slots=True)
class TenantTasks:
    """:class:`TaskService` bound to one tenant: every method acts in :attr:`tenant` only.

    Programs reach tasks only through this (``service.scoped(tenant)``): the HTTP API builds
    one per request from the caller's credentials, the CLI from ``--tenant``, the client from
    its ``tenant``. Another tenant's task is "not found", exactly like an id that never
    existed; another tenant's ids given to a replay are skipped like unknown ones.
    """

    service: TaskService
    tenant: str = DEFAULT_TENANT
    operator: bool = False
    """Whether the scope was opened by an operator (who may list every tenant's workers)."""

    @property
    def settings(self) -> Settings:
        """The service's settings."""
        return self.service.settings

    @property
    def store(self) -> Store:
        """The store underneath, unscoped (health checks, tools): reading tenant data through
        it bypasses the scope, so programs use this object's methods instead."""
        return self.service.store

    def prepare(self, spec: EnqueueSpec, *, loc: tuple[Any, ...] = ()) -> TaskInsert:
        """See :meth:`TaskService.prepare`."""
        return self.service.prepare(spec, loc=loc, tenant=self.tenant)

    def prepare_many(self, specs: Sequence[EnqueueSpec]) -> list[TaskInsert]:
        """See :meth:`TaskService.prepare_many`."""
        return self.service.prepare_many(specs, tenant=self.tenant)

    def enqueue(self, spec: EnqueueSpec, *, actor: Actor | None = None) -> EnqueueResult:
        """See :meth:`TaskService.enqueue`."""
        return self.service.enqueue(spec, actor=actor, tenant=self.tenant)

    def enqueue_many(
        self, specs: Sequence[EnqueueSpec], *, actor: Actor | None = None
    ) -> list[EnqueueResult]:
        """See :meth:`TaskService.enqueue_many`."""
        return self.service.enqueue_many(specs, actor=actor, tenant=self.tenant)

    def get(self, task_id: uuid.UUID, *, runs: bool = True) -> TaskRecord:
        """See :meth:`TaskService.get`."""
        return self.service.get(task_id, runs=runs, tenant=self.tenant)

    def get_many(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TaskRecord]:
        """The tasks among ``task_ids`` that are this tenant's, by id (runs not read)."""
        return self.service._get_tasks(task_ids, self.tenant)

    def list_tasks(self, search: TaskSearch | None = None, **filters: Any) -> list[TaskRecord]:
        """See :meth:`TaskService.list_tasks`."""
        return self.service.list_tasks(search, tenant=self.tenant, **filters)

    def latest_runs(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
        """See :meth:`TaskService.latest_runs` (ids this scope's listing returned)."""
        return self.service.latest_runs(task_ids, tenant=self.tenant)

    def cancel(self, task_id: uuid.UUID, *, actor: Actor | None = None) -> TaskRecord:
        """See :meth:`TaskService.cancel`."""
        return self.service.cancel(task_id, actor=actor, tenant=self.tenant)

    def dead_letters(
        self, queue: str, *, limit: int = 50, before: uuid.UUID | None = None
    ) -> list[TaskRecord]:
        """See :meth:`TaskService.dead_letters`."""
        return self.service.dead_letters(queue, limit=limit, before=before, tenant=self.tenant)

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
        """See :meth:`TaskService.replay`."""
        return self.service.replay(
            queue,
            task_ids,
            replay_all=replay_all,
            actor=actor,
            batch_size=batch_size,
            progress=progress,
            tenant=self.tenant,
        )

    def rerun(self, task_id: uuid.UUID, *, actor: Actor | None = None) -> TaskRecord:
        """See :meth:`TaskService.rerun`."""
        return self.service.rerun(task_id, actor=actor, tenant=self.tenant)

    def pause(self, queue: str, *, actor: Actor | None = None) -> None:
        """See :meth:`TaskService.pause`."""
        self.service.pause(queue, actor=actor, tenant=self.tenant)

    def resume(self, queue: str, *, actor: Actor | None = None) -> None:
        """See :meth:`TaskService.resume`."""
        self.service.resume(queue, actor=actor, tenant=self.tenant)

    def queues(self) -> list[QueueCounts]:
        """See :meth:`TaskService.queues`."""
        return self.service.queues(tenant=self.tenant)

    def workers(
        self, *, include_offline: bool = True, all_tenants: bool = False
    ) -> list[WorkerInfo]:
        """Workers serving this tenant; ``all_tenants`` (operators only) every worker."""
        if all_tenants and not self.operator:
            raise ValidationError("only an operator may list the workers of every tenant")
        tenant = None if all_tenants else self.tenant
        return self.service.workers(include_offline=include_offline, tenant=tenant)

    def audit(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        target_id: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
        all_tenants: bool = False,
    ) -> list[Any]:
        """This tenant's audit rows, newest first (``all_tenants``, operators only: every
        tenant's); see :meth:`taskrt.store.Store.list_audit`."""
        if all_tenants and not self.operator:
            raise ValidationError("only an operator may read the audit log of every tenant")
        return self.service.store.list_audit(
            action=action,
            actor=actor,
            target_id=target_id,
            limit=limit,
            before_id=before_id,
            tenant=None if all_tenants else self.tenant,
        )
