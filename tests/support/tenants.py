"""Tenants for tests: made by inserting into the ``tenants`` table (what ``taskrt tenants
create`` does, without depending on its command or route), and snapshots of one tenant's rows
and Redis keys, to show that another tenant's requests changed nothing of it."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from taskrt.db.models import tenants

# the tables holding a tenant column, with the columns a snapshot compares (every column but
# those a read may touch)
TENANT_TABLES = ("tasks", "task_runs", "outbox", "queues", "schedules", "api_keys", "audit_log")


def create_tenant(engine: sa.Engine, name: str, *, weight: int = 1) -> str:
    """Insert tenant ``name`` (no quotas); returns the name."""
    with engine.begin() as conn:
        conn.execute(sa.insert(tenants).values(name=name, weight=weight))
    return name


def snapshot(engine: sa.Engine, tenant: str, redis: Any = None, prefix: str = "") -> dict[str, Any]:
    """Every row of ``tenant`` in the tenant tables (``last_used_at`` of API keys left out:
    authenticating writes it), its schedules' fires, and its Redis queue keys with their
    contents."""
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for name in TENANT_TABLES:
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            columns = [c for c in table.c if c.name != "last_used_at"]
            rows = conn.execute(sa.select(*columns).where(table.c.tenant == tenant)).all()
            out[name] = sorted(repr(tuple(row)) for row in rows)
        fires = conn.execute(
            sa.text(
                "SELECT f.* FROM schedule_fires f JOIN schedules s ON s.id = f.schedule_id "
                "WHERE s.tenant = :t"
            ),
            {"t": tenant},
        ).all()
        out["schedule_fires"] = sorted(repr(tuple(row)) for row in fires)
    if redis is not None:
        keys = sorted(k.decode() for k in redis.scan_iter(match=f"{prefix}queue:{{{tenant}/*"))
        out["redis"] = {key: _redis_value(redis, key) for key in keys}
    return out


def _redis_value(redis: Any, key: str) -> Any:
    kind = redis.type(key).decode()
    if kind == "list":
        return redis.lrange(key, 0, -1)
    if kind == "zset":
        return redis.zrange(key, 0, -1, withscores=True)
    if kind == "hash":
        return sorted(redis.hgetall(key).items())
    if kind == "set":
        return sorted(redis.smembers(key))
    if kind == "string":
        return redis.get(key)
    return kind


__all__ = ["create_tenant", "snapshot"]
