"""The arithmetic of tenant quotas (the enqueue-rate token bucket), the checks of tenant
settings, and the ``tenant`` metrics label switch (issue 16)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from taskrt import metrics
from taskrt.records import QueueCounts, TenantRecord
from taskrt.store.quotas import Quota, refill, take
from taskrt.tenants import MAX_QUEUED_LIMIT, name_problem, setting_problems

NOW = datetime(2026, 12, 3, tzinfo=UTC)


def test_the_bucket_refills_at_capacity_per_period_up_to_capacity() -> None:
    assert refill(0.0, 30.0, 60, 60.0) == 30.0  # 1 a second
    assert refill(10.0, 6.0, 600, 60.0) == 70.0  # 10 a second
    assert refill(59.0, 3600.0, 60, 60.0) == 60.0  # never above capacity
    assert refill(5.0, -10.0, 60, 60.0) == 5.0  # a clock that went back refills nothing


def test_taking_tokens_spends_them_or_says_how_long_to_wait() -> None:
    assert take(5.0, 0.0, 5, 60, 60.0) == (True, 0.0, 0.0)
    allowed, left, wait = take(2.0, 0.0, 5, 60, 60.0)
    assert (allowed, left) == (False, 2.0)
    assert wait == pytest.approx(3.0)  # 3 tokens missing at 1 a second
    allowed, left, wait = take(0.0, 0.0, 1, 3, 3600.0)
    assert not allowed
    assert wait == pytest.approx(1200.0)  # 3/hour: one token every 20 minutes
    # a batch larger than the capacity never passes; it waits for a full bucket
    allowed, _, wait = take(0.0, 0.0, 10, 4, 40.0)
    assert not allowed
    assert wait == pytest.approx(40.0)


def test_a_steady_stream_at_the_rate_passes_and_a_faster_one_does_not() -> None:
    tokens, passed = 10.0, 0
    for _ in range(100):  # 100 enqueues, one every 0.1 s, at 10/second: all pass
        allowed, tokens, _ = take(tokens, 0.1, 1, 10, 1.0)
        passed += allowed
    assert passed == 100
    tokens, passed = 10.0, 0
    for _ in range(100):  # one every 0.05 s: the burst, then half of them
        allowed, tokens, _ = take(tokens, 0.05, 1, 10, 1.0)
        passed += allowed
    assert 55 <= passed <= 61


def test_quota_of_a_tenant() -> None:
    def tenant(max_queued: int | None, rate: str | None) -> TenantRecord:
        return TenantRecord("acme", 1, max_queued, rate, NOW, NOW)

    assert Quota.of(tenant(None, None)) is None  # no quota: the fast path
    assert Quota.of(tenant(100, None)) == Quota("acme", 100)
    quota = Quota.of(tenant(None, "600/minute"))
    assert quota is not None
    assert (quota.rate_capacity, quota.rate_period, quota.rate_text) == (600, 60.0, "600/minute")


def test_tenant_names_and_settings_are_checked_field_by_field() -> None:
    assert name_problem("acme-eu_1") is None
    for bad in ("", "Acme", "a/b", "a.b", "-a", "a" * 65, "*"):
        assert name_problem(bad) is not None, bad
    assert setting_problems({"weight": 1, "max_queued": 0, "enqueue_rate": "1/second"}) == []
    assert setting_problems({"max_queued": None, "enqueue_rate": None}) == []
    fields = [
        p["loc"][0]
        for p in setting_problems(
            {"weight": 1001, "max_queued": MAX_QUEUED_LIMIT + 1, "enqueue_rate": "0/minute"}
        )
    ]
    assert fields == ["weight", "max_queued", "enqueue_rate"]
    assert setting_problems({"weight": True})[0]["msg"] == "must be an integer"


def test_the_tenant_label_can_be_emptied_and_queues_then_add_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counts = [
        QueueCounts("shared", ready=2, delayed=0, inflight=0, dlq=0, paused=False, tenant="a"),
        QueueCounts("shared", ready=3, delayed=1, inflight=0, dlq=0, paused=True, tenant="b"),
    ]
    metrics.watch_queues(lambda: counts)
    try:
        assert metrics.tenant_label("acme") == "acme"
        value = metrics.REGISTRY.get_sample_value
        assert (
            value("taskrt_queue_depth", {"tenant": "a", "queue": "shared", "state": "ready"}) == 2
        )
        metrics.label_tenants(False)
        monkeypatch.setattr(metrics._QueueDepth, "CACHE_SECONDS", 0.0)
        assert metrics.tenant_label("acme") == ""
        assert value("taskrt_queue_depth", {"tenant": "", "queue": "shared", "state": "ready"}) == 5
        assert value("taskrt_queue_paused", {"tenant": "", "queue": "shared"}) == 1
    finally:
        metrics.label_tenants(True)
        metrics.watch_queues(None)
