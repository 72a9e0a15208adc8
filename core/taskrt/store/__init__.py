"""All SQL taskrt runs lives in this package; :class:`Store` puts its parts together.

Each part (tasks, runs, claims, reaping, the SQL queue, the outbox, workers, queue state, the
audit log, API keys, schedules) is a mixin of statements written once; what differs between
PostgreSQL and SQLite sits behind :class:`taskrt.store.dialects.Dialect`, chosen once when the
store is built.
"""

from __future__ import annotations

from taskrt.records import Actor, Enqueued, LostRun, RunState, TaskInsert
from taskrt.store.api_keys import ApiKeyRecord, ApiKeyStore
from taskrt.store.audit import AuditRecord, AuditStore
from taskrt.store.claims import ClaimStore
from taskrt.store.outbox import OutboxStore
from taskrt.store.pruning import PruneStore
from taskrt.store.queues import QueueStateStore
from taskrt.store.reaping import ReapStore
from taskrt.store.replay import TaskChangeStore
from taskrt.store.runs import RunStore
from taskrt.store.schedules import ScheduleStore
from taskrt.store.sqlqueue import SqlQueueStore
from taskrt.store.tasks import TaskStore
from taskrt.store.tenants import TenantStore
from taskrt.store.workers import WorkerStore


class Store(
    TaskStore,
    TaskChangeStore,
    RunStore,
    ReapStore,
    ClaimStore,
    SqlQueueStore,
    OutboxStore,
    WorkerStore,
    QueueStateStore,
    AuditStore,
    ApiKeyStore,
    ScheduleStore,
    PruneStore,
    TenantStore,
):
    """The durable record: tasks, runs, outbox, workers, queue state, the audit log, API keys
    and schedules.

    ``Store(engine, outbox=True)`` writes an outbox row with every queued run it creates (for
    the Redis backend); ``raw_reads=False`` makes PostgreSQL's hot reads through SQLAlchemy.
    """


__all__ = [
    "Actor",
    "ApiKeyRecord",
    "AuditRecord",
    "Enqueued",
    "LostRun",
    "RunState",
    "Store",
    "TaskInsert",
]
