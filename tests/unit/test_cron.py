"""Fire-time arithmetic: time zones, daylight saving and misfire plans (injected clocks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from taskrt.exceptions import ValidationError
from taskrt.scheduler.cron import CronSchedule
from taskrt.scheduler.misfire import plan_fires

BERLIN = ZoneInfo("Europe/Berlin")


def local(times: list[datetime], zone: ZoneInfo = BERLIN) -> list[str]:
    return [t.astimezone(zone).isoformat() for t in times]


def test_daily_0230_in_berlin_across_a_whole_year_fires_once_a_day() -> None:
    cron = CronSchedule("30 2 * * *", "Europe/Berlin")
    fires = cron.upcoming(datetime(2025, 12, 31, 12, tzinfo=UTC), 365)
    days = [t.astimezone(BERLIN).date() for t in fires]
    assert len(set(days)) == 365  # once per day, no day missed, none twice
    assert fires == sorted(fires)
    # spring forward (2026-03-29): 02:30 does not exist -> the first valid instant, 03:00 CEST
    spring = next(t for t in fires if t.astimezone(BERLIN).date().isoformat() == "2026-03-29")
    assert spring.astimezone(BERLIN).isoformat() == "2026-03-29T03:00:00+02:00"
    # fall back (2026-10-25): 02:30 happens twice -> once, at the first (CEST) occurrence
    fall = [t for t in fires if t.astimezone(BERLIN).date().isoformat() == "2026-10-25"]
    assert local(fall) == ["2026-10-25T02:30:00+02:00"]
    # every other day it is 02:30 local time
    others = [t for t in fires if t.astimezone(BERLIN).date().isoformat() != "2026-03-29"]
    assert {t.astimezone(BERLIN).strftime("%H:%M") for t in others} == {"02:30"}


def test_a_zone_without_daylight_saving_is_plain_arithmetic() -> None:
    cron = CronSchedule("30 2 * * *", "Asia/Kolkata")
    fires = cron.upcoming(datetime(2026, 3, 1, tzinfo=UTC), 300)
    assert all(b - a == timedelta(days=1) for a, b in pairwise(fires))
    assert fires[0].isoformat() == "2026-03-01T21:00:00+00:00"


def test_interval_like_schedules_keep_firing_through_the_repeated_hour() -> None:
    cron = CronSchedule("*/30 * * * *", "Europe/Berlin")
    fires = cron.upcoming(datetime(2026, 10, 24, 22, tzinfo=UTC), 10)
    assert all(b - a == timedelta(minutes=30) for a, b in pairwise(fires))
    assert "2026-10-25T02:30:00+02:00" in local(fires)
    assert "2026-10-25T02:30:00+01:00" in local(fires)


def test_skipped_times_collapse_into_one_fire_at_the_end_of_the_gap() -> None:
    cron = CronSchedule("*/15 * * * *", "Europe/Berlin")
    fires = cron.upcoming(datetime(2026, 3, 29, 0, 40, tzinfo=UTC), 4)
    assert local(fires) == [
        "2026-03-29T01:45:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:15:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]


def test_seconds_come_first_in_six_field_expressions() -> None:
    cron = CronSchedule("*/20 * * * * *", "UTC")
    assert [t.second for t in cron.upcoming(datetime(2026, 1, 1, tzinfo=UTC), 3)] == [20, 40, 0]


@pytest.mark.parametrize(
    ("expression", "zone", "message"),
    [
        ("61 * * * *", "UTC", "out of range"),
        ("* * *", "UTC", "5 fields"),
        ("every minute", "UTC", "5 fields"),
        ("* * * * *", "Mars/Olympus", "unknown time zone"),
        ("* * * * *", "", "unknown time zone"),
    ],
)
def test_bad_expressions_and_zones_are_refused(expression: str, zone: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CronSchedule(expression, zone)


SECONDLY = CronSchedule("* * * * * *", "UTC")
T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("policy", "fired_missed"), [("skip", 0), ("coalesce", 1), ("all", 5)])
def test_slots_missed_while_down_follow_the_policy(policy: str, fired_missed: int) -> None:
    # the stored next fire time is T0; the scheduler comes back 4.5 s later (slots :00 to :04
    # passed, the last one 0.5 s ago); grace 0.4 s
    now = T0 + timedelta(seconds=4.5)
    plan = plan_fires(SECONDLY, T0, now, policy=policy, grace=0.4, cap=100)
    missed = [t for t in plan.fire if t < now - timedelta(seconds=0.4)]
    on_time = [t for t in plan.fire if t >= now - timedelta(seconds=0.4)]
    assert len(missed) == fired_missed
    assert on_time == []  # 12:00:04 is 0.5 s overdue: missed too
    if policy == "coalesce":
        assert missed == [T0]  # stamped with the first missed slot: the same in every scheduler
    assert plan.next_fire_at == T0 + timedelta(seconds=5)
    assert plan.missed


def test_the_all_policy_is_capped_and_on_time_slots_always_fire() -> None:
    now = T0 + timedelta(seconds=100, milliseconds=200)
    plan = plan_fires(SECONDLY, T0, now, policy="all", grace=1.0, cap=10)
    assert plan.fire[:10] == [T0 + timedelta(seconds=i) for i in range(10)]
    assert plan.fire[10:] == [T0 + timedelta(seconds=100)]  # within the grace: on time


def test_nothing_missed_fires_exactly_the_due_slots() -> None:
    now = T0 + timedelta(milliseconds=300)
    plan = plan_fires(SECONDLY, T0, now, policy="skip", grace=5, cap=10)
    assert plan.fire == [T0]
    assert not plan.missed


@pytest.mark.parametrize("expression", ["R * * * *", "H/15 * * * *", "0 H * * *"])
def test_random_and_hashed_fields_are_refused(expression: str) -> None:
    # each scheduler would compute different slots, and a slot could fire twice
    with pytest.raises(ValidationError, match="random"):
        CronSchedule(expression, "UTC")


def test_names_of_days_and_months_are_fine() -> None:
    assert CronSchedule("0 9 * MAR THU", "UTC").upcoming(datetime(2026, 3, 1, tzinfo=UTC), 1)
