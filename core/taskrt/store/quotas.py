"""Tenant quotas, checked in the database inside the enqueue transaction.

A tenant may have a ``max-queued`` quota (tasks waiting to run: queued, delayed or retrying) and
an ``enqueue-rate`` quota (a token bucket: ``capacity`` tasks refilled evenly over ``period``
seconds). :meth:`QuotaStore.check_quota` runs first in the transaction that inserts the tasks, so
a refusal (QuotaExceededError) rolls everything back: nothing is stored and no token is spent,
and a failed insert gives its tokens back the same way.

Exact across any number of API processes, because the database serializes the enqueues of one
limited tenant: on PostgreSQL a transaction-scoped advisory lock per tenant (``max-queued``) and
the bucket row's lock (``enqueue-rate``); on SQLite ``BEGIN IMMEDIATE`` already serializes
writers. Tenants without quotas never come here (decision 33's one-statement insert). The clock
is the database's (decision 58).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskrt import metrics
from taskrt.db.types import db_now
from taskrt.exceptions import QuotaExceededError
from taskrt.records import TenantRecord
from taskrt.settings_values import parse_rate
from taskrt.store.base import TASKS, StoreBase
from taskrt.store.tenants import QUOTA_STATE, TENANTS, WAITING_STATUSES

MAX_QUEUED = "max-queued"
ENQUEUE_RATE = "enqueue-rate"

QUOTA_CACHE_SECONDS = 5.0
"""How long a process trusts the quotas it read: a change made elsewhere applies within this."""

_LOCK = sa.text("SELECT pg_advisory_xact_lock(hashtext('taskrt.quota'), hashtext(:tenant))")


@dataclass(frozen=True, slots=True)
class Quota:
    """A tenant's quotas, as the insert path checks them (None: that quota is not set)."""

    tenant: str
    max_queued: int | None = None
    rate_capacity: int | None = None
    rate_period: float | None = None
    rate_text: str | None = None
    """The rate as configured (``"600/minute"``), for error messages."""

    @property
    def limited(self) -> bool:
        """Whether any quota is set (else the insert takes its usual fast path)."""
        return self.max_queued is not None or self.rate_capacity is not None

    @classmethod
    def of(cls, tenant: TenantRecord) -> Quota | None:
        """The quotas of ``tenant``; None when it has none."""
        capacity, period = (None, None)
        if tenant.enqueue_rate is not None:
            capacity, period = parse_rate(tenant.enqueue_rate)
        quota = cls(tenant.name, tenant.max_queued, capacity, period, tenant.enqueue_rate)
        return quota if quota.limited else None


def refill(tokens: float, elapsed: float, capacity: int, period: float) -> float:
    """The bucket's tokens after ``elapsed`` seconds: refilled at ``capacity / period`` a
    second, never above ``capacity`` (a clock that went back refills nothing)."""
    return min(float(capacity), tokens + max(elapsed, 0.0) * capacity / period)


def take(
    tokens: float, elapsed: float, n: int, capacity: int, period: float
) -> tuple[bool, float, float]:
    """Try to take ``n`` tokens: ``(allowed, tokens left, seconds to wait if refused)``.

    A batch larger than the capacity can never pass; its wait is the time to a full bucket.
    """
    have = refill(tokens, elapsed, capacity, period)
    if have >= n:
        return True, have - n, 0.0
    missing = min(float(n), float(capacity)) - have
    return False, have, max(missing, 0.0) * period / capacity


class QuotaStore(StoreBase):
    """The quota check of the enqueue transaction, and the quotas of each tenant (cached)."""

    _quota_cache: tuple[float, dict[str, Quota]] | None = None
    _quota_lock = threading.Lock()

    def tenant_quota(self, tenant: str) -> Quota | None:
        """``tenant``'s quotas (None: it has none, or does not exist), from a copy of the
        tenants table at most :data:`QUOTA_CACHE_SECONDS` old."""
        cached = self._quota_cache
        if cached is None or time.monotonic() - cached[0] > QUOTA_CACHE_SECONDS:
            with self._quota_lock:
                cached = self._quota_cache
                if cached is None or time.monotonic() - cached[0] > QUOTA_CACHE_SECONDS:
                    cached = (time.monotonic(), self._read_quotas())
                    self._quota_cache = cached
        return cached[1].get(tenant)

    def forget_quotas(self) -> None:
        """Read the quotas again on next use (after this process changed a tenant)."""
        self._quota_cache = None

    def _read_quotas(self) -> dict[str, Quota]:
        limited = sa.or_(TENANTS.c.max_queued.is_not(None), TENANTS.c.enqueue_rate.is_not(None))
        with self.connection() as conn:
            rows = conn.execute(sa.select(TENANTS).where(limited)).mappings().all()
        quotas = (
            Quota.of(
                TenantRecord(
                    r["name"], r["weight"], r["max_queued"], r["enqueue_rate"],
                    r["created_at"], r["updated_at"],
                )
            )
            for r in rows
        )  # fmt: skip
        return {q.tenant: q for q in quotas if q is not None}

    def check_quota(self, conn: Connection, quota: Quota, n: int) -> None:
        """Inside ``conn``'s transaction, before inserting ``n`` tasks of ``quota.tenant``:
        raise QuotaExceededError if they would cross a quota, else spend their rate tokens.

        A batch is all or nothing; tasks a dedup key will resolve to a live task count too.
        """
        if quota.max_queued is not None:
            self._check_max_queued(conn, quota.tenant, quota.max_queued, n)
        if quota.rate_capacity is not None and quota.rate_period is not None:
            self._take_tokens(conn, quota, n)

    def _check_max_queued(self, conn: Connection, tenant: str, limit: int, n: int) -> None:
        if self.is_postgresql:
            conn.execute(_LOCK, {"tenant": tenant})
        # bounded by the limit, not by the table: reads at most `limit` index entries
        waiting = (
            sa.select(sa.literal(1))
            .where(TASKS.c.tenant == tenant, TASKS.c.status.in_(WAITING_STATUSES))
            .limit(limit)
            .subquery()
        )
        count = conn.execute(sa.select(sa.func.count()).select_from(waiting)).scalar_one()
        if count + n > limit:
            metrics.quota_refused(tenant, MAX_QUEUED)
            raise QuotaExceededError(tenant, MAX_QUEUED, limit)

    def _take_tokens(self, conn: Connection, quota: Quota, n: int) -> None:
        capacity, period = quota.rate_capacity, quota.rate_period
        assert capacity is not None
        assert period is not None
        tenant = quota.tenant
        conn.execute(
            self.sql.upsert(QUOTA_STATE)
            .values(tenant=tenant, tokens=float(capacity), refilled_at=db_now())
            .on_conflict_do_nothing(index_elements=["tenant"])
        )
        read = sa.select(QUOTA_STATE.c.tokens, QUOTA_STATE.c.refilled_at, db_now()).where(
            QUOTA_STATE.c.tenant == tenant
        )
        if self.is_postgresql:
            read = read.with_for_update()
        tokens, refilled_at, now = conn.execute(read).one()
        allowed, left, wait = take(tokens, _seconds(refilled_at, now), n, capacity, period)
        if not allowed:
            metrics.quota_refused(tenant, ENQUEUE_RATE)
            raise QuotaExceededError(
                tenant, ENQUEUE_RATE, quota.rate_text or f"{capacity}/{period:g}s", wait
            )
        conn.execute(
            sa.update(QUOTA_STATE)
            .where(QUOTA_STATE.c.tenant == tenant)
            .values(tokens=left, refilled_at=now)
        )


def _seconds(earlier: datetime, later: datetime) -> float:
    return (later - earlier).total_seconds()


__all__ = ["ENQUEUE_RATE", "MAX_QUEUED", "Quota", "QuotaStore", "refill", "take"]
