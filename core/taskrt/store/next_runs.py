"""Creating the run that follows another (a retry, or the next try of a lost run), with its
outbox row when the store keeps an outbox."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskrt.db import models
from taskrt.db.types import db_now_plus
from taskrt.records import DispatchEntry
from taskrt.store.mappers import dispatch_entry

_RUNS = models.task_runs
_OUTBOX = models.outbox

_INSERT_NEXT_RUN = (
    sa.insert(_RUNS)
    .values(available_at=db_now_plus(sa.bindparam("delay_s", type_=sa.Float())))
    .returning(_RUNS.c.id, _RUNS.c.available_at, sort_by_parameter_order=True)
)


class PreviousRun(Protocol):
    """The fields of a run that creating its successor needs."""

    @property
    def task_id(self) -> uuid.UUID: ...

    @property
    def attempt(self) -> int: ...

    @property
    def queue(self) -> str: ...

    @property
    def tenant(self) -> str: ...


def insert_next_runs(
    conn: Connection,
    next_runs: Sequence[tuple[uuid.UUID, PreviousRun, float]],
    *,
    outbox: bool,
    suspect: bool = False,
) -> list[DispatchEntry]:
    """Insert (new run id, previous run, delay in seconds) as queued runs of the previous
    run's tenant and queue, due after their delay by the database clock; returns their
    dispatch entries."""
    rows = conn.execute(
        _INSERT_NEXT_RUN,
        [
            {
                "id": run_id,
                "task_id": run.task_id,
                "tenant": run.tenant,
                "attempt": run.attempt + 1,
                "status": "queued",
                "queue_name": run.queue,
                "delay_s": delay,
                "suspect": suspect,
            }
            for run_id, run, delay in next_runs
        ],
    ).all()
    entries = [
        dispatch_entry(run_id, run.queue, available_at, delay <= 0, tenant=run.tenant)
        for (run_id, run, delay), (_rid, available_at) in zip(next_runs, rows, strict=True)
    ]
    if outbox:
        write_outbox(
            conn,
            [(e.run_id, e.tenant, e.queue, at) for e, (_r, at) in zip(entries, rows, strict=True)],
        )
    return entries


def write_outbox(conn: Connection, runs: Sequence[tuple[uuid.UUID, str, str, datetime]]) -> None:
    """Outbox rows for (run id, tenant, queue, available_at) of runs just created."""
    if runs:
        conn.execute(
            sa.insert(_OUTBOX),
            [
                {"run_id": r, "tenant": t, "queue_name": q, "available_at": at}
                for r, t, q, at in runs
            ],
        )
