"""All SQL taskrt runs lives in this package; :class:`Store` puts its parts together."""

from __future__ import annotations

from taskrt.queue.base import LostRun
from taskrt.store.audit import Actor, AuditRecord, AuditStore
from taskrt.store.outbox import OutboxStore
from taskrt.store.queues import QueueStateStore
from taskrt.store.runs import RunState, RunStore
from taskrt.store.tasks import Enqueued, TaskInsert, TaskStore
from taskrt.store.workers import WorkerStore


class Store(TaskStore, RunStore, OutboxStore, WorkerStore, QueueStateStore, AuditStore):
    """The durable record: tasks, runs, outbox, workers, queue state and the audit log."""


__all__ = [
    "Actor",
    "AuditRecord",
    "Enqueued",
    "LostRun",
    "RunState",
    "Store",
    "TaskInsert",
]
