"""Fair fetch plans across tenants (worker/fairness.py)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from taskrt.exceptions import ValidationError
from taskrt.queue.base import as_plan
from taskrt.records import TenantRecord, address
from taskrt.worker.fairness import HINT_SECONDS, TenantRotation
from taskrt.worker.main import WorkerOptions, parse_tenants


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rotation(tenants: list[str] | None, **weights: int) -> TenantRotation:
    return TenantRotation(tenants, weights=weights or None, rng=random.Random(7))


def follow(plan: list[tuple[str, int]], limit: int, backlog: dict[str, int]) -> list[str]:
    """What a fetch following ``plan`` takes (the rule RedisFetcher.lease and the SQL claim
    apply: each entry gives min(cap, want); an address that came back short is not asked
    again). Returns the address of each run taken, in order."""
    taken: list[str] = []
    short: set[str] = set()
    for addr, cap in plan:
        want = limit - len(taken)
        if want <= 0:
            break
        if addr in short:
            continue
        ask = min(cap, want)
        got = min(ask, backlog.get(addr, 0))
        backlog[addr] = backlog.get(addr, 0) - got
        taken.extend([addr] * got)
        if got < ask:
            short.add(addr)
    return taken


def hinted(rot: TenantRotation) -> bool:
    return rot.hinted


def leads(rot: TenantRotation, n: int, limit: int = 1) -> Counter[str]:
    counts: Counter[str] = Counter()
    for _ in range(n):
        plan = rot.plan(["q"], limit)
        counts[plan[0][0]] += 1
    return counts


def test_one_tenant_takes_todays_plan_exactly() -> None:
    rot = TenantRotation(["default"])
    assert rot.single == "default"
    assert rot.plan(["high", "low"], 7) == [("high", 7), ("low", 7)]
    assert as_plan(["high", "low"], 7) == rot.plan(["high", "low"], 7)
    acme = TenantRotation(["acme"])
    assert acme.plan(["high"], 3) == [("acme/high", 3)]


@pytest.mark.parametrize(
    "weights", [{"a": 1, "b": 1}, {"a": 3, "b": 1}, {"a": 5, "b": 3, "c": 2}, {"a": 1, "b": 7}]
)
def test_swrr_leads_in_proportion_to_the_weights(weights: dict[str, int]) -> None:
    rot = rotation(list(weights), **weights)
    n = 10_000
    counts = leads(rot, n)
    total = sum(weights.values())
    for tenant, weight in weights.items():
        share = counts[address(tenant, "q")] / n
        assert abs(share - weight / total) <= 0.02, (tenant, share)


def test_smooth_rotation_spreads_the_lead() -> None:
    rot = rotation(["a", "b"], a=3, b=1)
    firsts = [rot.plan(["q"], 1)[0][0] for _ in range(8)]
    # smooth: the light tenant leads once in every four, never starved for long
    assert firsts.count("b/q") == 2
    assert "b/q" in firsts[:4]
    assert "b/q" in firsts[4:]


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 8, 20])
@pytest.mark.parametrize(
    "weights",
    [
        {"a": 1, "b": 1},
        {"a": 100, "b": 1, "c": 1, "d": 1},
        {"a": 3, "b": 1},
        {f"t{i}": i + 1 for i in range(12)},
    ],
)
def test_pass_one_caps_sum_to_at_most_the_limit(limit: int, weights: dict[str, int]) -> None:
    rot = rotation(list(weights), **weights)
    for _ in range(50):
        plan = rot.plan(["q"], limit)
        firsts = list(dict.fromkeys(addr for addr, _cap in plan))
        pass1 = plan[: next(i for i, (a, _c) in enumerate(plan[1:], 1) if a in dict(plan[:i]))]
        assert sum(cap for _a, cap in pass1) == limit
        assert all(cap >= 1 for _a, cap in pass1)
        assert len(pass1) <= limit
        pass2 = plan[len(pass1) :]
        assert [a for a, _ in pass2] == firsts  # pass 2: the same first, then the others
        assert all(cap == limit for _a, cap in pass2)
        assert set(firsts) == {address(t, "q") for t in weights}


def test_more_tenants_than_the_limit_take_turns() -> None:
    names = [f"t{i}" for i in range(10)]
    rot = rotation(names)
    seen: Counter[str] = Counter()
    for _ in range(100):
        for addr, _cap in rot.plan(["q"], 3)[:3]:
            seen[addr] += 1
    assert set(seen) == {address(t, "q") for t in names}
    assert max(seen.values()) - min(seen.values()) <= 3


def test_pass_two_fills_the_batch_from_the_only_busy_tenant() -> None:
    rot = rotation(["a", "b", "c"])
    plan = rot.plan(["q"], 9)
    taken = follow(plan, 9, {"a/q": 100, "b/q": 0, "c/q": 1})
    assert len(taken) == 9
    assert Counter(taken) == {"a/q": 8, "c/q": 1}


def test_two_busy_tenants_share_a_batch_by_weight() -> None:
    rot = rotation(["a", "b"], a=3, b=1)
    taken = Counter(
        addr for _ in range(100) for addr in follow(rot.plan(["q"], 4), 4, {"a/q": 99, "b/q": 99})
    )
    assert taken == {"a/q": 300, "b/q": 100}


def test_queue_priority_holds_inside_every_tenant() -> None:
    rot = rotation(["a", "b"])
    for _ in range(20):
        plan = [addr for addr, _cap in rot.plan(["high", "low"], 4)]
        last_high = max(i for i, addr in enumerate(plan) if addr.endswith("/high"))
        first_low = min(i for i, addr in enumerate(plan) if addr.endswith("/low"))
        assert last_high < first_low  # B's high comes before A's low and B's low
    taken = follow(rot.plan(["high", "low"], 4), 4, {"b/high": 1, "a/low": 9, "b/low": 9})
    assert taken[0] == "b/high"


def test_an_empty_hint_leaves_an_address_out_until_a_wake_up_names_it() -> None:
    clock = Clock()
    rot = TenantRotation(["a", "b"], clock=clock)
    rot.hint_empty(["b/q"])
    assert hinted(rot)
    assert {a for a, _ in rot.plan(["q"], 4)} == {"a/q"}
    rot.woken(["b/q"])
    assert not hinted(rot)
    assert {a for a, _ in rot.plan(["q"], 4)} == {"a/q", "b/q"}


def test_an_empty_hint_expires() -> None:
    clock = Clock()
    rot = TenantRotation(["a", "b"], clock=clock)
    rot.hint_empty(["a/q", "b/q"])
    assert rot.plan(["q"], 4) == []
    clock.now += HINT_SECONDS
    assert {a for a, _ in rot.plan(["q"], 4)} == {"a/q", "b/q"}
    assert not hinted(rot)


def _tenant(name: str, weight: int = 1) -> TenantRecord:
    now = datetime.now(UTC)
    return TenantRecord(name, weight, None, None, now, now)


def test_every_tenant_comes_from_the_table_and_refreshes_on_its_clock() -> None:
    clock = Clock()
    table = [_tenant("default"), _tenant("acme", 3)]
    rot = TenantRotation(None, load=lambda: table, refresh=10.0, clock=clock)
    assert rot.all_tenants
    assert rot.single is None
    rot.refresh(force=True)
    assert sorted(rot.tenants) == ["acme", "default"]
    assert rot.weights == {"default": 1, "acme": 3}
    table = [_tenant("acme", 3), _tenant("beta")]  # default gone?! (deleted tenants leave)
    rot.refresh()
    assert sorted(rot.tenants) == ["acme", "default"]  # not yet: the refresh clock
    clock.now += 10.0
    rot.refresh()
    assert sorted(rot.tenants) == ["acme", "beta"]
    assert {a for a, _ in rot.plan(["q"], 4)} == {"acme/q", "beta/q"}


def test_a_tenant_list_takes_weights_from_the_table_unless_given() -> None:
    table = [_tenant("a", 5), _tenant("b", 2)]
    rot = TenantRotation(["a", "b"], weights={"b": 4}, load=lambda: table)
    rot.refresh(force=True)
    assert rot.weights == {"a": 5, "b": 4}


def test_a_failed_table_read_keeps_the_tenants() -> None:
    calls = {"n": 0}

    def load() -> list[TenantRecord]:
        calls["n"] += 1
        if calls["n"] > 1:
            raise RuntimeError("database away")
        return [_tenant("a"), _tenant("b")]

    rot = TenantRotation(None, load=load, refresh=0.0)
    rot.refresh()
    rot.refresh()
    assert sorted(rot.tenants) == ["a", "b"]


def test_parse_tenants() -> None:
    assert parse_tenants("*") == ([], None, True)
    assert parse_tenants("a,b") == (["a", "b"], None, False)
    assert parse_tenants("a:3, b") == (["a", "b"], {"a": 3}, False)
    for bad, message in [
        ("", "names no tenant"),
        ("a,a", "listed twice"),
        ("a:x", "must be an integer"),
        ("a:0", "must be 1 to 1000"),
        ("a:1001", "must be 1 to 1000"),
        ("Acme", "invalid tenant name"),
        ("a/b", "invalid tenant name"),
        ("a,*", "cannot be combined"),
    ]:
        with pytest.raises(ValidationError, match=message):
            parse_tenants(bad)


def test_worker_options_name_the_served_tenant() -> None:
    assert WorkerOptions().tenant == "default"
    assert WorkerOptions(tenants=["acme"]).tenant == "acme"
    assert WorkerOptions(tenants=["a", "b"]).tenant == "*"
    assert WorkerOptions(all_tenants=True).tenant == "*"
