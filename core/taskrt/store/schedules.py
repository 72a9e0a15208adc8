"""Schedules, their task templates and their fires."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskrt.db.types import UTCDateTime, db_now
from taskrt.exceptions import NotFoundError
from taskrt.records import DEFAULT_TENANT, Actor, FireRecord, ScheduleRecord, TaskInsert
from taskrt.store.audit import write_audit
from taskrt.store.base import FIRES, SCHEDULES, TASKS, StoreBase
from taskrt.store.mappers import schedule_from_row

_SCHEDULE_COLUMNS = (
    SCHEDULES,
    TASKS.c.name.label("task_name"),
    TASKS.c.payload,
    TASKS.c.queue_name,
    TASKS.c.max_retries,
    TASKS.c.retry_strategy,
    TASKS.c.retry_params,
    TASKS.c.timeout_seconds,
    TASKS.c.priority,
)


def _schedule_select() -> sa.Select[Any]:
    return sa.select(*_SCHEDULE_COLUMNS).join(TASKS, TASKS.c.id == SCHEDULES.c.task_template_id)


class ScheduleStore(StoreBase):
    """Statements about schedules."""

    def create_schedule(
        self,
        template: TaskInsert,
        *,
        name: str | None,
        cron: str,
        timezone: str,
        enabled: bool,
        misfire_policy: str,
        next_fire_at: datetime | None,
        actor: Actor | None = None,
    ) -> ScheduleRecord:
        """Store the template task and the schedule in one transaction (with an audit row),
        both in the template's tenant."""
        schedule_id = template.id  # one id for the schedule and its template keeps them paired
        with self.transaction() as conn:
            self.insert_tasks_in(conn, [template])  # type: ignore[attr-defined]
            conn.execute(
                sa.insert(SCHEDULES).values(
                    id=schedule_id,
                    tenant=template.tenant,
                    name=name,
                    task_template_id=template.id,
                    cron_expr=cron,
                    timezone=timezone,
                    enabled=enabled,
                    misfire_policy=misfire_policy,
                    next_fire_at=next_fire_at,
                )
            )
            write_audit(
                conn,
                actor,
                "schedule.create",
                "schedule",
                [schedule_id],
                {"cron": cron, "timezone": timezone, "task": template.name},
                tenant=template.tenant,
            )
        return self.get_schedule(schedule_id, tenant=template.tenant)

    def get_schedule(
        self, schedule_id: uuid.UUID, *, tenant: str = DEFAULT_TENANT
    ) -> ScheduleRecord:
        """One of ``tenant``'s schedules; NotFoundError if unknown or another tenant's."""
        stmt = _schedule_select().where(SCHEDULES.c.id == schedule_id, SCHEDULES.c.tenant == tenant)
        with self.connection() as conn:
            row = conn.execute(stmt).mappings().first()
        if row is None:
            raise NotFoundError(f"no schedule with id {schedule_id}")
        return schedule_from_row(row)

    def list_schedules(
        self, *, limit: int = 100, after: uuid.UUID | None = None, tenant: str = DEFAULT_TENANT
    ) -> list[ScheduleRecord]:
        """``tenant``'s schedules, oldest first, keyset-paginated by id."""
        stmt = (
            _schedule_select()
            .where(SCHEDULES.c.tenant == tenant)
            .order_by(SCHEDULES.c.id)
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(SCHEDULES.c.id > after)
        with self.connection() as conn:
            return [schedule_from_row(row) for row in conn.execute(stmt).mappings()]

    def update_schedule(
        self,
        schedule_id: uuid.UUID,
        changes: dict[str, Any],
        *,
        template_changes: dict[str, Any] | None = None,
        action: str = "schedule.update",
        actor: Actor | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> ScheduleRecord:
        """Apply ``changes`` to ``tenant``'s schedule row (and ``template_changes`` to its
        template); NotFoundError if unknown or another tenant's."""
        with self.transaction() as conn:
            row = conn.execute(
                sa.update(SCHEDULES)
                .where(SCHEDULES.c.id == schedule_id, SCHEDULES.c.tenant == tenant)
                .values(**changes, updated_at=db_now())
                .returning(SCHEDULES.c.task_template_id)
            ).first()
            if row is None:
                raise NotFoundError(f"no schedule with id {schedule_id}")
            if template_changes:
                conn.execute(
                    sa.update(TASKS)
                    .where(TASKS.c.id == row[0], TASKS.c.tenant == tenant)
                    .values(**template_changes, updated_at=db_now())
                )
            details = {k: str(v) for k, v in {**changes, **(template_changes or {})}.items()}
            write_audit(conn, actor, action, "schedule", [schedule_id], details, tenant=tenant)
        return self.get_schedule(schedule_id, tenant=tenant)

    def delete_schedule(
        self, schedule_id: uuid.UUID, *, actor: Actor | None = None, tenant: str = DEFAULT_TENANT
    ) -> None:
        """Delete one of ``tenant``'s schedules, its template and its fire history (fired
        tasks stay); NotFoundError if unknown or another tenant's."""
        with self.transaction() as conn:
            row = conn.execute(
                sa.select(SCHEDULES.c.task_template_id).where(
                    SCHEDULES.c.id == schedule_id, SCHEDULES.c.tenant == tenant
                )
            ).first()
            if row is None:
                raise NotFoundError(f"no schedule with id {schedule_id}")
            conn.execute(sa.delete(SCHEDULES).where(SCHEDULES.c.id == schedule_id))
            conn.execute(sa.delete(TASKS).where(TASKS.c.id == row[0]))
            write_audit(conn, actor, "schedule.delete", "schedule", [schedule_id], tenant=tenant)

    def fires(
        self,
        schedule_id: uuid.UUID,
        *,
        limit: int = 100,
        before: int | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> list[FireRecord]:
        """Fires of one of ``tenant``'s schedules, newest first (none for another tenant's)."""
        stmt = (
            sa.select(FIRES)
            .join(SCHEDULES, SCHEDULES.c.id == FIRES.c.schedule_id)
            .where(FIRES.c.schedule_id == schedule_id, SCHEDULES.c.tenant == tenant)
            .order_by(FIRES.c.fire_at.desc())
            .limit(limit)
        )
        if before is not None:
            stmt = stmt.where(FIRES.c.id < before)
        with self.connection() as conn:
            return [
                FireRecord(
                    id=row["id"],
                    schedule_id=row["schedule_id"],
                    fire_at=row["fire_at"],
                    task_id=row["task_id"],
                    created_at=row["created_at"],
                )
                for row in conn.execute(stmt).mappings()
            ]

    # --- the scheduler's statements (inside its transaction) --------------------------------
    def lock_due_schedules(
        self, conn: Connection, limit: int
    ) -> tuple[list[ScheduleRecord], datetime]:
        """Enabled schedules due by the database clock, locked (SKIP LOCKED: another scheduler
        takes the others), and the database time."""
        now = conn.execute(sa.select(db_now())).scalar_one()
        stmt = (
            _schedule_select()
            .where(
                SCHEDULES.c.enabled,
                SCHEDULES.c.next_fire_at <= sa.bindparam("now", now, type_=UTCDateTime()),
            )
            .order_by(SCHEDULES.c.next_fire_at)
            .limit(limit)
        )
        stmt = self.sql.skip_locked(stmt, of=SCHEDULES)
        return [schedule_from_row(row) for row in conn.execute(stmt).mappings()], now

    def record_fire(
        self, conn: Connection, schedule_id: uuid.UUID, fire_at: datetime
    ) -> int | None:
        """Claim the slot (schedule, fire time); its id if this call won it, else None."""
        stmt = (
            self.sql.upsert(FIRES)
            .values(schedule_id=schedule_id, fire_at=fire_at)
            .on_conflict_do_nothing(index_elements=["schedule_id", "fire_at"])
            .returning(FIRES.c.id)
        )
        row = conn.execute(stmt).first()
        return None if row is None else int(row[0])

    def link_fire(self, conn: Connection, fire_id: int, task_id: uuid.UUID) -> None:
        """Record the task a fire created."""
        conn.execute(sa.update(FIRES).where(FIRES.c.id == fire_id).values(task_id=task_id))

    def advance_schedule(
        self,
        conn: Connection,
        schedule_id: uuid.UUID,
        *,
        next_fire_at: datetime,
        last_triggered_at: datetime | None,
    ) -> None:
        """Move the schedule's next fire time forward (never back)."""
        values: dict[str, Any] = {"next_fire_at": next_fire_at}
        if last_triggered_at is not None:  # the caller holds the row: it knows the old value
            values["last_triggered_at"] = last_triggered_at
        conn.execute(
            sa.update(SCHEDULES)
            .where(
                SCHEDULES.c.id == schedule_id,
                sa.or_(
                    SCHEDULES.c.next_fire_at.is_(None),
                    SCHEDULES.c.next_fire_at
                    < sa.bindparam("nf", next_fire_at, type_=UTCDateTime()),
                ),
            )
            .values(**values)
        )

    def seconds_until_next_fire(self) -> float | None:
        """Seconds until the earliest enabled schedule is due (database clock), or None."""
        with self.connection() as conn:
            earliest, now = conn.execute(
                sa.select(sa.func.min(SCHEDULES.c.next_fire_at), db_now()).where(
                    SCHEDULES.c.enabled
                )
            ).one()
        if earliest is None:
            return None
        return max(float((earliest - now).total_seconds()), 0.0)


__all__: Sequence[str] = ["ScheduleStore", "schedule_from_row"]
