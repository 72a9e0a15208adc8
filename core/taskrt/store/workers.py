"""The worker registry: registration, heartbeats and offline marking."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import sqlalchemy as sa

from taskrt.db.types import db_now, db_now_plus
from taskrt.records import DEFAULT_TENANT, WorkerInfo, WorkerStatus
from taskrt.store.base import WORKERS, StoreBase


class WorkerStore(StoreBase):
    """Statements about workers."""

    def register_worker(self, info: WorkerInfo) -> WorkerInfo:
        """Insert the worker's row as ``online``; returns it with the database's timestamps."""
        with self.transaction() as conn:
            row = conn.execute(
                sa.insert(WORKERS)
                .values(
                    id=info.id,
                    name=info.name,
                    hostname=info.hostname,
                    pid=info.pid,
                    queues=list(info.queues),
                    concurrency=info.concurrency,
                    version=info.version,
                    status=WorkerStatus.ONLINE.value,
                    tenant=info.tenant,
                    tenants=None if info.tenants is None else list(info.tenants),
                )
                .returning(WORKERS.c.started_at, WORKERS.c.heartbeat_at)
            ).one()
        return WorkerInfo(
            **{**_fields(info), "started_at": row.started_at, "heartbeat_at": row.heartbeat_at}
        )

    def heartbeat(self, worker_id: uuid.UUID, status: WorkerStatus) -> None:
        """Record that the worker is alive (and its status)."""
        with self.transaction() as conn:
            conn.execute(
                sa.update(WORKERS)
                .where(WORKERS.c.id == worker_id)
                .values(heartbeat_at=db_now(), status=status.value)
            )

    def worker_stopped(self, worker_id: uuid.UUID) -> None:
        """Mark the worker offline on a clean exit."""
        with self.transaction() as conn:
            conn.execute(
                sa.update(WORKERS)
                .where(WORKERS.c.id == worker_id)
                .values(
                    status=WorkerStatus.OFFLINE.value, stopped_at=db_now(), heartbeat_at=db_now()
                )
            )

    def mark_silent_workers_offline(self, silent_for: float) -> int:
        """Mark workers whose last heartbeat is older than ``silent_for`` seconds offline."""
        with self.transaction() as conn:
            result = conn.execute(
                sa.update(WORKERS)
                .where(
                    WORKERS.c.status != WorkerStatus.OFFLINE.value,
                    WORKERS.c.heartbeat_at < db_now_plus(sa.literal(-silent_for, sa.Float())),
                )
                .values(status=WorkerStatus.OFFLINE.value)
            )
            return int(result.rowcount or 0)

    def list_workers(
        self,
        *,
        include_offline: bool = True,
        limit: int = 500,
        tenant: str | None = DEFAULT_TENANT,
    ) -> list[WorkerInfo]:
        """Workers serving ``tenant`` alone, most recently started first. None (operators):
        every worker, those serving several tenants (``*``) included; a tenant does not see
        those, whose host names and pids are the shared fleet's."""
        stmt = sa.select(WORKERS).order_by(WORKERS.c.started_at.desc()).limit(limit)
        if tenant is not None:
            stmt = stmt.where(WORKERS.c.tenant == tenant)
        if not include_offline:
            stmt = stmt.where(WORKERS.c.status != WorkerStatus.OFFLINE.value)
        with self.connection() as conn:
            return [
                WorkerInfo(
                    id=row["id"],
                    name=row["name"],
                    hostname=row["hostname"],
                    pid=row["pid"],
                    queues=tuple(row["queues"] or ()),
                    concurrency=row["concurrency"],
                    version=row["version"],
                    status=WorkerStatus(row["status"]),
                    started_at=row["started_at"],
                    heartbeat_at=row["heartbeat_at"],
                    tenant=row["tenant"],
                    tenants=None if row["tenants"] is None else tuple(row["tenants"]),
                )
                for row in conn.execute(stmt).mappings()
            ]


def _fields(info: WorkerInfo) -> dict[str, object]:
    return {name: getattr(info, name) for name in info.__dataclass_fields__}


__all__: Sequence[str] = ["WorkerStore"]
