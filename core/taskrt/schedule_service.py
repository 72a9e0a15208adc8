"""The service layer for schedules: create, change, delete, preview and fire them.

Firing creates tasks, so it goes through :class:`~taskrt.service.TaskService` like any producer
(its enqueue hooks and events included): one transaction records the fire (unique per schedule
and fire time), the task, its run and its outbox row; the dispatch follows the commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import lru_cache
from typing import Any

from taskrt.exceptions import ValidationError
from taskrt.ids import uuid7
from taskrt.jsonlimits import text_problems
from taskrt.records import (
    DEFAULT_TENANT,
    Actor,
    Enqueued,
    FireRecord,
    ScheduleFire,
    ScheduleRecord,
    TaskInsert,
    TaskKind,
)
from taskrt.scheduler.cron import CronSchedule
from taskrt.scheduler.misfire import MISFIRE_POLICIES, plan_fires
from taskrt.service import EnqueueSpec, TaskService


@lru_cache(maxsize=1024)
def cron_schedule(cron: str, timezone: str) -> CronSchedule:
    """A validated, cached CronSchedule."""
    return CronSchedule(cron, timezone)


def check_misfire_policy(policy: str) -> str:
    """Return ``policy`` if known, else raise ValidationError."""
    if policy not in MISFIRE_POLICIES:
        raise ValidationError(
            f"unknown misfire policy {policy!r}: use one of {', '.join(MISFIRE_POLICIES)}",
            [{"loc": ["misfire_policy"], "msg": "unknown misfire policy"}],
        )
    return policy


def check_texts(**fields: str | None) -> None:
    """ValidationError naming each field whose text no store can hold (lone surrogates, NUL)."""
    problems = [p for key, value in fields.items() for p in text_problems(value, [key])]
    if problems:
        raise ValidationError(f"{problems[0]['loc'][0]}: {problems[0]['msg']}", problems)


@dataclass(slots=True)
class FireReport:
    """What one scheduler tick fired."""

    fires: list[ScheduleFire] = field(default_factory=list)
    """Each fire this tick won, with the task it created."""
    schedules: int = 0

    @property
    def fired(self) -> list[tuple[uuid.UUID, datetime, uuid.UUID]]:
        """(schedule id, fire time, task id) of each fire this tick won."""
        return [(f.schedule_id, f.fire_at, f.task_id) for f in self.fires]


class ScheduleService:
    """Schedules, validated and written in one place; the scheduler calls :meth:`fire_due`."""

    def __init__(self, tasks: TaskService) -> None:
        self.tasks = tasks
        self.store = tasks.store
        self.settings = tasks.settings

    def scoped(self, tenant: str = DEFAULT_TENANT, *, check: bool = True) -> TenantSchedules:
        """This service bound to ``tenant`` (what the API and the CLI use): another tenant's
        schedule is "not found". UnknownTenantError if no such tenant exists (``check=False``:
        the caller knows it does)."""
        return TenantSchedules(self, self.tasks.check_tenant(tenant) if check else tenant)

    # --- create and change ----------------------------------------------------------------
    def create(
        self,
        *,
        cron: str,
        timezone: str,
        task: str,
        payload: Any = None,
        queue: str | None = None,
        misfire_policy: str = "coalesce",
        name: str | None = None,
        enabled: bool = True,
        max_retries: int | None = None,
        retry: str | None = None,
        retry_params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        priority: int | None = None,
        actor: Actor | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> ScheduleRecord:
        """Validate and store a schedule of ``tenant`` (its fires create tasks of that
        tenant); nothing is stored if anything is wrong."""
        check_texts(name=name, cron=cron, timezone=timezone, misfire_policy=misfire_policy)
        schedule = cron_schedule(cron, timezone)
        check_misfire_policy(misfire_policy)
        template = self.tasks.prepare(
            EnqueueSpec(
                name=task,
                payload=payload,
                queue=queue,
                max_retries=max_retries,
                retry=retry,
                retry_params=retry_params,
                timeout=timeout,
                priority=priority,
            ),
            tenant=tenant,
        )
        template = replace(template, kind=TaskKind.SCHEDULED)
        return self.store.create_schedule(
            template,
            name=name,
            cron=cron,
            timezone=timezone,
            enabled=enabled,
            misfire_policy=misfire_policy,
            next_fire_at=schedule.next_after(self.store.now()),
            actor=actor,
        )

    def get(self, schedule_id: uuid.UUID, *, tenant: str = DEFAULT_TENANT) -> ScheduleRecord:
        """One schedule (NotFoundError for another tenant's)."""
        return self.store.get_schedule(schedule_id, tenant=tenant)

    def list_schedules(
        self, *, limit: int = 100, after: uuid.UUID | None = None, tenant: str = DEFAULT_TENANT
    ) -> list[ScheduleRecord]:
        """Schedules of ``tenant``, oldest first."""
        return self.store.list_schedules(limit=limit, after=after, tenant=tenant)

    def fires(
        self, schedule_id: uuid.UUID, *, limit: int = 100, tenant: str = DEFAULT_TENANT
    ) -> list[FireRecord]:
        """Recent fires of a schedule, newest first."""
        self.store.get_schedule(schedule_id, tenant=tenant)
        return self.store.fires(schedule_id, limit=limit, tenant=tenant)

    def update(
        self,
        schedule_id: uuid.UUID,
        *,
        cron: str | None = None,
        timezone: str | None = None,
        enabled: bool | None = None,
        misfire_policy: str | None = None,
        name: str | None = None,
        payload: Any = None,
        set_payload: bool = False,
        queue: str | None = None,
        max_retries: int | None = None,
        retry: str | None = None,
        retry_params: Mapping[str, Any] | None = None,
        actor: Actor | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> ScheduleRecord:
        """Change a schedule of ``tenant``. A new cron expression or zone takes effect from
        now; enabling again keeps the stored next fire time, so slots missed while disabled
        follow the misfire policy. New template settings (payload, queue, retries) apply to
        the tasks fired from now on. A new ``retry`` without ``retry_params`` starts from none;
        new ``retry_params`` alone apply to the current strategy."""
        check_texts(name=name, cron=cron, timezone=timezone, misfire_policy=misfire_policy)
        current = self.store.get_schedule(schedule_id, tenant=tenant)
        changes: dict[str, Any] = {}
        template: dict[str, Any] = {}
        if cron is not None or timezone is not None:
            schedule = cron_schedule(cron or current.cron, timezone or current.timezone)
            changes.update(
                cron_expr=schedule.expression,
                timezone=schedule.timezone,
                next_fire_at=schedule.next_after(self.store.now()),
            )
        if misfire_policy is not None:
            changes["misfire_policy"] = check_misfire_policy(misfire_policy)
        if name is not None:
            changes["name"] = name
        if enabled is not None:
            changes["enabled"] = enabled
        retry_changed = retry is not None or retry_params is not None
        if set_payload or queue is not None or max_retries is not None or retry_changed:
            if retry_params is not None:
                params: Mapping[str, Any] = retry_params
            else:  # a new strategy starts from none; an unchanged one keeps its own
                params = {} if retry is not None else current.retry_params
            checked = self.tasks.prepare(
                EnqueueSpec(
                    name=current.task_name,
                    payload=payload if set_payload else current.payload,
                    queue=queue or current.queue,
                    max_retries=current.max_retries if max_retries is None else max_retries,
                    retry=retry or current.retry,
                    retry_params=params,
                ),
                tenant=tenant,
            )
            template.update(payload=checked.payload, queue_name=checked.queue)
            if max_retries is not None:
                template["max_retries"] = checked.max_retries
            if retry_changed:
                template.update(retry_strategy=checked.retry, retry_params=checked.retry_params)
        if not changes and not template:
            return current
        action = "schedule.update"
        if set(changes) == {"enabled"} and not template:
            action = "schedule.enable" if enabled else "schedule.disable"
        return self.store.update_schedule(
            schedule_id,
            changes,
            template_changes=template,
            action=action,
            actor=actor,
            tenant=tenant,
        )

    def delete(
        self, schedule_id: uuid.UUID, *, actor: Actor | None = None, tenant: str = DEFAULT_TENANT
    ) -> None:
        """Delete a schedule (the tasks it fired stay)."""
        self.store.delete_schedule(schedule_id, actor=actor, tenant=tenant)

    def preview(
        self, schedule_id: uuid.UUID, count: int, *, tenant: str = DEFAULT_TENANT
    ) -> list[datetime]:
        """The next ``count`` fire times (UTC) from now."""
        record = self.store.get_schedule(schedule_id, tenant=tenant)
        return cron_schedule(record.cron, record.timezone).upcoming(self.store.now(), count)

    # --- firing ---------------------------------------------------------------------------
    def fire_due(self, *, limit: int = 50) -> FireReport:
        """Fire every slot that is due, in one transaction; after the commit, dispatch the
        tasks and emit "tasks created" and "schedule fired" (see docs/concepts/events.md)."""
        report = FireReport()
        items: list[TaskInsert] = []
        outcomes: list[Enqueued] = []
        with self.store.transaction() as conn:
            due, now = self.store.lock_due_schedules(conn, limit)
            report.schedules = len(due)
            for schedule in due:
                assert schedule.next_fire_at is not None
                plan = plan_fires(
                    cron_schedule(schedule.cron, schedule.timezone),
                    schedule.next_fire_at,
                    now,
                    policy=schedule.misfire_policy,
                    grace=self.settings.scheduler_misfire_grace,
                    cap=self.settings.scheduler_misfire_cap,
                )
                last = schedule.last_triggered_at
                for slot in plan.fire:
                    fire_id = self.store.record_fire(conn, schedule.id, slot)
                    if fire_id is None:  # another scheduler fired this slot
                        continue
                    item = _task_from_template(schedule)
                    # through the service, so before_enqueue (now) and after_enqueue (after
                    # the commit) observers see scheduled tasks like any other
                    outcomes.extend(self.tasks.enqueue_in(conn, [item]))
                    items.append(item)
                    self.store.link_fire(conn, fire_id, item.id)
                    report.fires.append(
                        ScheduleFire(
                            schedule_id=schedule.id,
                            fire_at=slot,
                            task_id=item.id,
                            task_name=item.name,
                            queue=item.queue,
                            lag=(now - slot).total_seconds(),
                            tenant=item.tenant,
                        )
                    )
                    last = slot if last is None else max(last, slot)
                self.store.advance_schedule(
                    conn, schedule.id, next_fire_at=plan.next_fire_at, last_triggered_at=last
                )
        if items:
            self.tasks.enqueued(items, outcomes)
            self.tasks.events.schedule_fired(report.fires)
        return report

    def seconds_until_next_fire(self) -> float | None:
        """Seconds until the earliest enabled schedule is due (database clock), or None."""
        return self.store.seconds_until_next_fire()


def _task_from_template(schedule: ScheduleRecord) -> TaskInsert:
    return TaskInsert(
        id=uuid7(),
        run_id=uuid7(),
        name=schedule.task_name,
        queue=schedule.queue,
        payload=schedule.payload,
        max_retries=schedule.max_retries,
        retry=schedule.retry,
        retry_params=dict(schedule.retry_params),
        timeout=schedule.timeout,
        priority=schedule.priority,
        trace_id=f"schedule-{schedule.id}",
        tenant=schedule.tenant,  # a schedule fires into its own tenant
    )


@dataclass(frozen=True, slots=True)
class TenantSchedules:
    """:class:`ScheduleService` bound to one tenant (``schedules.scoped(tenant)``): what the
    API and the CLI use. Another tenant's schedule is "not found", like an unknown id."""

    service: ScheduleService
    tenant: str = DEFAULT_TENANT

    def create(self, *, actor: Actor | None = None, **fields: Any) -> ScheduleRecord:
        """See :meth:`ScheduleService.create` (same keywords)."""
        return self.service.create(actor=actor, tenant=self.tenant, **fields)

    def get(self, schedule_id: uuid.UUID) -> ScheduleRecord:
        """See :meth:`ScheduleService.get`."""
        return self.service.get(schedule_id, tenant=self.tenant)

    def list_schedules(
        self, *, limit: int = 100, after: uuid.UUID | None = None
    ) -> list[ScheduleRecord]:
        """See :meth:`ScheduleService.list_schedules`."""
        return self.service.list_schedules(limit=limit, after=after, tenant=self.tenant)

    def fires(self, schedule_id: uuid.UUID, *, limit: int = 100) -> list[FireRecord]:
        """See :meth:`ScheduleService.fires`."""
        return self.service.fires(schedule_id, limit=limit, tenant=self.tenant)

    def update(
        self, schedule_id: uuid.UUID, *, actor: Actor | None = None, **fields: Any
    ) -> ScheduleRecord:
        """See :meth:`ScheduleService.update` (same keywords)."""
        return self.service.update(schedule_id, actor=actor, tenant=self.tenant, **fields)

    def delete(self, schedule_id: uuid.UUID, *, actor: Actor | None = None) -> None:
        """See :meth:`ScheduleService.delete`."""
        self.service.delete(schedule_id, actor=actor, tenant=self.tenant)

    def preview(self, schedule_id: uuid.UUID, count: int) -> list[datetime]:
        """See :meth:`ScheduleService.preview`."""
        return self.service.preview(schedule_id, count, tenant=self.tenant)
