"""Creating, reading, cancelling and replaying tasks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping

from taskrt.db.types import UTCDateTime, db_now, db_now_plus
from taskrt.exceptions import InvalidStateError, NotFoundError
from taskrt.ids import uuid7
from taskrt.records import (
    LIVE_TASK_STATUSES,
    Actor,
    DispatchEntry,
    Enqueued,
    RunRecord,
    RunStatus,
    TaskInsert,
    TaskKind,
    TaskRecord,
    TaskStatus,
)
from taskrt.store.audit import write_audit
from taskrt.store.base import OUTBOX, RUNS, TASKS, StoreBase, dumps

_LIVE_DEDUP = sa.text(
    "dedup_key IS NOT NULL AND status IN (" + ", ".join(f"'{s}'" for s in LIVE_TASK_STATUSES) + ")"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_INSERT_PG_TEMPLATE = """
WITH input AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset(CAST(:batch AS jsonb)) AS v(
        id uuid, run_id uuid, name text, type text, priority int, queue_name text,
        payload jsonb, status text, dedup_key text, max_retries int, retry_strategy text,
        retry_params jsonb, timeout_seconds float8, retry_count int, lost_runs int,
        trace_id text, due_at timestamptz, delay_s float8)
),
t AS (
    INSERT INTO tasks (id, name, type, priority, queue_name, payload, status, dedup_key,
        max_retries, retry_strategy, retry_params, timeout_seconds, retry_count, lost_runs,
        trace_id)
    SELECT id, name, type, priority, queue_name, payload, status, dedup_key, max_retries,
        retry_strategy, retry_params, timeout_seconds, retry_count, lost_runs, trace_id
    FROM input
    ON CONFLICT (name, dedup_key) WHERE {live_dedup} DO NOTHING
    RETURNING id, type
),
r AS (
    INSERT INTO task_runs (id, task_id, attempt, status, queue_name, available_at)
    SELECT input.run_id, input.id, 1, 'queued', input.queue_name,
        coalesce(input.due_at, statement_timestamp() + make_interval(secs => input.delay_s))
    FROM input JOIN t ON t.id = input.id
    WHERE t.type = 'immediate'
    RETURNING id, task_id, queue_name, available_at
){outbox}
SELECT t.id, r.id, r.available_at FROM t LEFT JOIN r ON r.task_id = t.id
"""
_OUTBOX_CTE = """,
o AS (
    INSERT INTO outbox (run_id, queue_name, available_at)
    SELECT id, queue_name, available_at FROM r
)"""
_INSERT_PG = sa.text(_INSERT_PG_TEMPLATE.format(live_dedup=_LIVE_DEDUP.text, outbox=""))
# the same, for psycopg directly (StoreBase.raw_statement): %(name)s placeholders
_INSERT_PG_RAW = _INSERT_PG.text.replace(":batch", "%(batch)s")
_INSERT_PG_WITH_OUTBOX = sa.text(
    _INSERT_PG_TEMPLATE.format(live_dedup=_LIVE_DEDUP.text, outbox=_OUTBOX_CTE)
)
_INSERT_PG_RAW_WITH_OUTBOX = _INSERT_PG_WITH_OUTBOX.text.replace(":batch", "%(batch)s")
# the audit rows of an HTTP create (one per task created), in the same statement: what
# write_audit would insert for action task.create
_AUDIT_CTE = """,
a AS (
    INSERT INTO audit_log (actor, action, target_type, target_id, request_id, client_ip, details)
    SELECT %(actor)s, 'task.create', 'task', t.id::text, %(request_id)s, %(client_ip)s,
        jsonb_build_object('name', input.name, 'queue', input.queue_name)
    FROM t JOIN input ON input.id = t.id
)"""
_INSERT_PG_RAW_AUDITED = {
    with_outbox: _INSERT_PG_TEMPLATE.format(
        live_dedup=_LIVE_DEDUP.text, outbox=(_OUTBOX_CTE if with_outbox else "") + _AUDIT_CTE
    ).replace(":batch", "%(batch)s")
    for with_outbox in (False, True)
}
_RUN_AVAILABLE_AT = sa.func.coalesce(
    sa.bindparam("due_at", type_=UTCDateTime()),
    db_now_plus(sa.bindparam("delay_s", type_=sa.Float())),
)


def dispatch_entry(
    run_id: uuid.UUID, queue: str, available_at: datetime, immediate: bool
) -> DispatchEntry:
    """A dispatch entry for a run due at ``available_at`` (``immediate``: ready at once)."""
    if immediate:
        return DispatchEntry(run_id=run_id, queue=queue)
    # rounded up: a run must never become ready before its due time by the store's clock
    micros = (available_at - _EPOCH) // timedelta(microseconds=1)
    return DispatchEntry(run_id=run_id, queue=queue, due_ms=-(-micros // 1000))


def _created(item: TaskInsert, placed: tuple[uuid.UUID, datetime] | None) -> Enqueued:
    if placed is None:
        return Enqueued(task_id=item.id, created=True)
    run_id, available_at = placed
    immediate = item.run_at is None and item.delay <= 0
    return Enqueued(
        task_id=item.id,
        created=True,
        dispatch=dispatch_entry(run_id, item.queue, available_at, immediate),
    )


def task_from_row(row: Mapping[Any, Any], runs: Sequence[RunRecord] = ()) -> TaskRecord:
    """Build a TaskRecord from a ``tasks`` row."""
    return TaskRecord(
        id=row["id"],
        name=row["name"],
        kind=TaskKind(row["type"]),
        queue=row["queue_name"],
        priority=row["priority"],
        payload=row["payload"],
        status=TaskStatus(row["status"]),
        max_retries=row["max_retries"],
        retry=row["retry_strategy"],
        retry_params=row["retry_params"] or {},
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        dedup_key=row["dedup_key"],
        timeout=row["timeout_seconds"],
        trace_id=row["trace_id"],
        failure_reason=row["failure_reason"],
        lost_runs=row["lost_runs"],
        finished_at=row["finished_at"],
        cancel_requested_at=row["cancel_requested_at"],
        runs=tuple(runs),
    )


def run_from_row(row: Mapping[Any, Any]) -> RunRecord:
    """Build a RunRecord from a ``task_runs`` row."""
    return RunRecord(
        id=row["id"],
        task_id=row["task_id"],
        attempt=row["attempt"],
        status=RunStatus(row["status"]),
        queue=row["queue_name"],
        available_at=row["available_at"],
        enqueued_at=row["enqueued_at"],
        worker_id=row["worker_id"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        result=row["result"],
        error_type=row["error_type"],
        error_message=row["error_message"],
        error_traceback=row["error_traceback"],
        outcome_reason=row["outcome_reason"],
        next_retry_at=row["next_retry_at"],
    )


# Reading one task and its runs on PostgreSQL through psycopg directly (StoreBase.raw_statement):
# the API reads a task back after every create, and SQLAlchemy's per-statement result set-up
# for these wide rows cost more than the statements themselves.
# (the column lists come from the schema in taskrt.db.models, never from input)
_TASK_COLUMNS = ", ".join(c.name for c in TASKS.c)
_RUN_COLUMNS = ", ".join(c.name for c in RUNS.c)
_GET_TASK_PG = f"SELECT {_TASK_COLUMNS} FROM tasks WHERE id = %(id)s"  # noqa: S608
_GET_RUNS_PG = f"SELECT {_RUN_COLUMNS} FROM task_runs WHERE task_id = %(id)s ORDER BY attempt"  # noqa: S608


class TaskStore(StoreBase):
    """Statements about whole tasks."""

    # --- create ---------------------------------------------------------------------------
    def _insert_ignoring_live_duplicates(
        self, conn: Connection, rows: list[dict[str, Any]]
    ) -> set[uuid.UUID]:
        insert = postgresql.insert if self.is_postgresql else sqlite.insert
        stmt = (
            insert(TASKS)
            .on_conflict_do_nothing(index_elements=["name", "dedup_key"], index_where=_LIVE_DEDUP)
            .returning(TASKS.c.id)
        )
        return {row[0] for row in conn.execute(stmt, rows)}

    def _live_task_for(self, conn: Connection, name: str, dedup_key: str) -> RowMapping | None:
        stmt = sa.select(TASKS.c.id, TASKS.c.queue_name).where(
            TASKS.c.name == name,
            TASKS.c.dedup_key == dedup_key,
            TASKS.c.status.in_(LIVE_TASK_STATUSES),
        )
        return conn.execute(stmt).mappings().first()

    def insert_tasks(
        self,
        items: Sequence[TaskInsert],
        *,
        with_outbox: bool,
        actor: Actor | None = None,
    ) -> list[Enqueued]:
        """Store tasks with their first runs (and outbox and audit rows) in one transaction.

        A task whose dedup key is held by a live task of the same name is not created; the
        live task is returned instead (``created=False``). The unique partial index makes this
        race-free: concurrent producers queue on it and all but one find the winner.
        """
        if self.is_postgresql and all(i.dedup_key is None for i in items):
            # nothing can conflict: the one statement (with the audit rows, if any) is the
            # whole transaction, sent without BEGIN and COMMIT round trips
            params: dict[str, Any] = {"batch": self._insert_batch(items)}
            if actor is None:
                statement = _INSERT_PG_RAW_WITH_OUTBOX if with_outbox else _INSERT_PG_RAW
            else:
                statement = _INSERT_PG_RAW_AUDITED[with_outbox]
                params.update(
                    actor=actor.name, request_id=actor.request_id, client_ip=actor.client_ip
                )
            with self.raw_statement() as raw:
                rows = raw.execute(statement, params).fetchall()
            placed = {row[0]: (row[1], row[2]) if row[1] is not None else None for row in rows}
            return [_created(item, placed[item.id]) for item in items]
        with self.transaction() as conn:
            return self.insert_tasks_in(conn, items, with_outbox=with_outbox, actor=actor)

    def insert_tasks_in(
        self,
        conn: Connection,
        items: Sequence[TaskInsert],
        *,
        with_outbox: bool,
        actor: Actor | None = None,
    ) -> list[Enqueued]:
        """:meth:`insert_tasks` inside the caller's transaction."""
        results: list[Enqueued | None] = [None] * len(items)
        pending = list(range(len(items)))
        if self.is_postgresql:
            placed = self._insert_with_runs_pg(conn, items, with_outbox)
            for i, item in enumerate(items):
                if item.id in placed:
                    results[i] = _created(item, placed[item.id])
            pending = [i for i in pending if results[i] is None]
        created: list[int] = []
        for _round in range(5):
            if not pending:
                break
            inserted = self._insert_ignoring_live_duplicates(
                conn, [self._task_row(items[i]) for i in pending]
            )
            retry_next: list[int] = []
            for i in pending:
                item = items[i]
                if item.id in inserted:
                    created.append(i)
                    continue
                assert item.dedup_key is not None  # only a dedup key can conflict
                live = self._live_task_for(conn, item.name, item.dedup_key)
                if live is None:  # the holder finished between our insert and this read
                    retry_next.append(i)
                else:
                    results[i] = Enqueued(task_id=live["id"], created=False)
            pending = retry_next
        if pending:
            raise InvalidStateError("could not settle a dedup race after 5 rounds; try again")
        if created:
            self._insert_first_runs(conn, items, created, results, with_outbox)
        new_tasks = [i for i, r in enumerate(results) if r is not None and r.created]
        write_audit(
            conn,
            actor,
            "task.create",
            "task",
            [items[i].id for i in new_tasks],
            [{"name": items[i].name, "queue": items[i].queue} for i in new_tasks],
        )
        return [r for r in results if r is not None]

    def _insert_with_runs_pg(
        self, conn: Connection, items: Sequence[TaskInsert], with_outbox: bool
    ) -> dict[uuid.UUID, tuple[uuid.UUID, datetime] | None]:
        """PostgreSQL: tasks, first runs and outbox rows in one statement (one round trip).

        Returns, for each task created, its run id and due time (None for templates); a task
        whose dedup key a live task holds is skipped and left out.
        """
        stmt = _INSERT_PG_WITH_OUTBOX if with_outbox else _INSERT_PG
        rows = conn.execute(stmt, {"batch": self._insert_batch(items)}).all()
        return {row[0]: (row[1], row[2]) if row[1] is not None else None for row in rows}

    def _insert_batch(self, items: Sequence[TaskInsert]) -> str | None:
        """The JSON document the PostgreSQL insert statement unpacks."""
        return dumps(
            [
                {
                    **self._task_row(item),
                    "id": str(item.id),
                    "run_id": str(item.run_id),
                    "due_at": item.run_at.isoformat() if item.run_at else None,
                    "delay_s": float(item.delay),
                }
                for item in items
            ]
        )

    @staticmethod
    def _task_row(item: TaskInsert) -> dict[str, Any]:
        return {
            "id": item.id,
            "name": item.name,
            "type": item.kind.value,
            "priority": item.priority,
            "queue_name": item.queue,
            "payload": item.payload,
            "status": "queued" if item.kind == TaskKind.IMMEDIATE else "pending",
            "dedup_key": item.dedup_key,
            "max_retries": item.max_retries,
            "retry_strategy": item.retry,
            "retry_params": item.retry_params,
            "timeout_seconds": item.timeout,
            "retry_count": 0,
            "lost_runs": 0,
            "trace_id": item.trace_id,
        }

    def _insert_first_runs(
        self,
        conn: Connection,
        items: Sequence[TaskInsert],
        created: list[int],
        results: list[Enqueued | None],
        with_outbox: bool,
    ) -> None:
        runnable = [i for i in created if items[i].kind == TaskKind.IMMEDIATE]
        for i in created:
            results[i] = Enqueued(task_id=items[i].id, created=True)
        if not runnable:
            return
        stmt = (
            sa.insert(RUNS)
            .values(available_at=_RUN_AVAILABLE_AT)
            .returning(RUNS.c.id, RUNS.c.available_at, sort_by_parameter_order=True)
        )
        rows = conn.execute(
            stmt,
            [
                {
                    "id": items[i].run_id,
                    "task_id": items[i].id,
                    "attempt": 1,
                    "status": "queued",
                    "queue_name": items[i].queue,
                    "due_at": items[i].run_at,
                    "delay_s": float(items[i].delay),
                }
                for i in runnable
            ],
        ).all()
        outbox_rows = []
        for i, (run_id, available_at) in zip(runnable, rows, strict=True):
            item = items[i]
            immediate = item.run_at is None and item.delay <= 0
            entry = dispatch_entry(run_id, item.queue, available_at, immediate)
            results[i] = Enqueued(task_id=item.id, created=True, dispatch=entry)
            outbox_rows.append(
                {"run_id": run_id, "queue_name": item.queue, "available_at": available_at}
            )
        if with_outbox:
            conn.execute(sa.insert(OUTBOX), outbox_rows)

    # --- read -----------------------------------------------------------------------------
    def get_task(self, task_id: uuid.UUID, *, runs: bool = True) -> TaskRecord:
        """The task and (by default) all its runs, oldest first; NotFoundError if unknown."""
        if self.is_postgresql:
            return self._get_task_pg(task_id, runs=runs)
        with self.connection() as conn:
            row = conn.execute(sa.select(TASKS).where(TASKS.c.id == task_id)).mappings().first()
            if row is None:
                raise NotFoundError(f"no task with id {task_id}")
            run_records: list[RunRecord] = []
            if runs:
                run_rows = conn.execute(
                    sa.select(RUNS).where(RUNS.c.task_id == task_id).order_by(RUNS.c.attempt)
                ).mappings()
                run_records = [run_from_row(r) for r in run_rows]
        return task_from_row(row, run_records)

    def _get_task_pg(self, task_id: uuid.UUID, *, runs: bool) -> TaskRecord:
        with self.raw_reader() as read:
            rows = read(_GET_TASK_PG, {"id": task_id})
            if not rows:
                raise NotFoundError(f"no task with id {task_id}")
            run_rows = read(_GET_RUNS_PG, {"id": task_id}) if runs else []
        return task_from_row(rows[0], [run_from_row(r) for r in run_rows])

    def get_tasks(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, TaskRecord]:
        """Several tasks by id (without runs); unknown ids are left out."""
        if not task_ids:
            return {}
        with self.connection() as conn:
            rows = conn.execute(sa.select(TASKS).where(TASKS.c.id.in_(task_ids))).mappings()
            return {row["id"]: task_from_row(row) for row in rows}

    def latest_runs(self, task_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, RunRecord]:
        """The newest run of each task."""
        if not task_ids:
            return {}
        newest = (
            sa.select(RUNS.c.task_id, sa.func.max(RUNS.c.attempt).label("attempt"))
            .where(RUNS.c.task_id.in_(task_ids))
            .group_by(RUNS.c.task_id)
            .subquery()
        )
        stmt = sa.select(RUNS).join(
            newest, sa.and_(RUNS.c.task_id == newest.c.task_id, RUNS.c.attempt == newest.c.attempt)
        )
        with self.connection() as conn:
            return {row["task_id"]: run_from_row(row) for row in conn.execute(stmt).mappings()}

    def list_tasks(
        self,
        *,
        status: str | None = None,
        queue: str | None = None,
        name: str | None = None,
        kind: str | None = "immediate",
        limit: int = 50,
        before: uuid.UUID | None = None,
    ) -> list[TaskRecord]:
        """Tasks newest first, filtered; ``before`` is the keyset cursor (an id). ``kind``
        ``immediate`` (the default) leaves out the templates schedules fire; None lists both."""
        stmt = sa.select(TASKS).order_by(TASKS.c.id.desc()).limit(limit)
        if kind:
            stmt = stmt.where(TASKS.c.type == kind)
        if status:
            stmt = stmt.where(TASKS.c.status == status)
        if queue:
            stmt = stmt.where(TASKS.c.queue_name == queue)
        if name:
            stmt = stmt.where(TASKS.c.name == name)
        if before is not None:
            stmt = stmt.where(TASKS.c.id < before)
        with self.connection() as conn:
            return [task_from_row(row) for row in conn.execute(stmt).mappings()]

    # --- cancel ---------------------------------------------------------------------------
    def cancel_task(
        self, task_id: uuid.UUID, *, actor: Actor | None = None
    ) -> tuple[TaskRecord, DispatchEntry | None]:
        """Cancel a task. A queued task is cancelled at once (its run too) and the run to
        withdraw from the queue is returned; a running one gets ``cancel_requested_at`` and
        its worker finishes the job. A finished task raises InvalidStateError."""
        withdrawn: DispatchEntry | None = None
        with self.transaction() as conn:
            row = conn.execute(
                sa.select(TASKS.c.status).where(TASKS.c.id == task_id).with_for_update()
            ).first()
            if row is None:
                raise NotFoundError(f"no task with id {task_id}")
            status = row[0]
            if status not in LIVE_TASK_STATUSES:
                raise InvalidStateError(f"task {task_id} is already {status}; nothing to cancel")
            run = conn.execute(
                sa.update(RUNS)
                .where(RUNS.c.task_id == task_id, RUNS.c.status == "queued")
                .values(status="cancelled", finished_at=db_now(), outcome_reason="cancelled")
                .returning(RUNS.c.id, RUNS.c.queue_name, RUNS.c.available_at)
            ).first()
            values: dict[str, Any] = {"cancel_requested_at": db_now(), "updated_at": db_now()}
            if run is not None or status == "pending":
                values.update(status="cancelled", finished_at=db_now())
                if run is not None:
                    withdrawn = DispatchEntry(run_id=run[0], queue=run[1])
            conn.execute(sa.update(TASKS).where(TASKS.c.id == task_id).values(**values))
            write_audit(conn, actor, "task.cancel", "task", [task_id], {"was": status})
        return self.get_task(task_id), withdrawn

    # --- replay ---------------------------------------------------------------------------
    def replay_tasks(
        self,
        queue: str | None,
        task_ids: Sequence[uuid.UUID],
        *,
        with_outbox: bool,
        actor: Actor | None = None,
        statuses: Sequence[str] = ("failed",),
        action: str = "dlq.replay",
    ) -> tuple[list[uuid.UUID], list[DispatchEntry]]:
        """Give finished tasks a fresh run and a fresh retry budget, each in its own queue.

        By default only tasks still ``failed`` (dead-lettered) are replayed, and only those of
        ``queue`` when it is given; ``statuses`` widens that (re-running a completed or
        cancelled task). The conditional UPDATE makes concurrent replays of one task create
        exactly one new run. Raises InvalidStateError when a re-run task's dedup key is held by
        another live task.
        """
        if not task_ids:
            return [], []
        conditions: list[sa.ColumnElement[bool]] = [
            TASKS.c.id.in_(list(task_ids)),
            TASKS.c.status.in_(list(statuses)),
        ]
        if queue is not None:
            conditions.append(TASKS.c.queue_name == queue)
        with self.transaction() as conn:
            try:
                queue_of: dict[uuid.UUID, str] = dict(
                    conn.execute(
                        sa.update(TASKS)
                        .where(*conditions)
                        .values(
                            status="queued",
                            failure_reason=None,
                            finished_at=None,
                            retry_count=0,
                            lost_runs=0,
                            cancel_requested_at=None,
                            updated_at=db_now(),
                        )
                        .returning(TASKS.c.id, TASKS.c.queue_name)
                    ).all()
                )
            except sa.exc.IntegrityError:
                raise InvalidStateError(
                    "another live task holds the dedup key of a task to re-run; wait for it to "
                    "finish or cancel it"
                ) from None
            won = list(queue_of)
            if not won:
                return [], []
            attempts = dict(
                conn.execute(
                    sa.select(RUNS.c.task_id, sa.func.max(RUNS.c.attempt))
                    .where(RUNS.c.task_id.in_(won))
                    .group_by(RUNS.c.task_id)
                ).all()
            )
            new_runs = [
                {
                    "id": uuid7(),
                    "task_id": task_id,
                    "attempt": attempts.get(task_id, 0) + 1,
                    "status": "queued",
                    "queue_name": queue_of[task_id],
                }
                for task_id in won
            ]
            rows = conn.execute(
                sa.insert(RUNS)
                .values(available_at=db_now())
                .returning(RUNS.c.id, RUNS.c.available_at, sort_by_parameter_order=True),
                new_runs,
            ).all()
            entries = [
                DispatchEntry(run_id=rid, queue=queue_of[task_id])
                for (rid, _at), task_id in zip(rows, won, strict=True)
            ]
            if with_outbox:
                conn.execute(
                    sa.insert(OUTBOX),
                    [
                        {"run_id": e.run_id, "queue_name": e.queue, "available_at": at}
                        for e, (_rid, at) in zip(entries, rows, strict=True)
                    ],
                )
            details = {"queue": queue} if queue is not None else {}
            write_audit(conn, actor, action, "task", won, details)
        return won, entries

    def failed_task_ids(
        self,
        queue: str,
        *,
        limit: int = 1000,
        after: uuid.UUID | None = None,
        finished_before: datetime | None = None,
        finished_after: datetime | None = None,
    ) -> list[uuid.UUID]:
        """Ids of failed (dead-lettered) tasks of ``queue``, oldest first, keyset-paginated."""
        stmt = (
            sa.select(TASKS.c.id)
            .where(TASKS.c.queue_name == queue, TASKS.c.status == "failed")
            .order_by(TASKS.c.id)
            .limit(limit)
        )
        if after is not None:
            stmt = stmt.where(TASKS.c.id > after)
        if finished_before is not None:
            stmt = stmt.where(
                TASKS.c.finished_at < sa.bindparam("fb", finished_before, type_=UTCDateTime())
            )
        if finished_after is not None:
            stmt = stmt.where(
                TASKS.c.finished_at >= sa.bindparam("fa", finished_after, type_=UTCDateTime())
            )
        with self.connection() as conn:
            return [row[0] for row in conn.execute(stmt)]

    def failed_queue_names(self) -> list[str]:
        """Queues holding dead-lettered tasks."""
        with self.connection() as conn:
            return [
                row[0]
                for row in conn.execute(
                    sa.select(TASKS.c.queue_name).where(TASKS.c.status == "failed").distinct()
                )
            ]

    def dead_letters(
        self, queue: str, *, limit: int = 50, before: uuid.UUID | None = None
    ) -> list[TaskRecord]:
        """Failed tasks of ``queue``, newest first, with their latest run."""
        tasks = self.list_tasks(status="failed", queue=queue, limit=limit, before=before)
        latest = self.latest_runs([t.id for t in tasks])
        return [task_from_row_with_run(t, latest.get(t.id)) for t in tasks]


def task_from_row_with_run(task: TaskRecord, run: RunRecord | None) -> TaskRecord:
    """``task`` carrying ``run`` as its only (latest) run."""
    from dataclasses import replace

    return replace(task, runs=(run,) if run else ())
