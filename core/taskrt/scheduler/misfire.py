"""Which slots of a due schedule fire now: on-time slots always; missed ones by policy.

A slot is *missed* when it is more than the grace period overdue (the scheduler was down, the
schedule was disabled, the clock jumped). Per schedule:

- ``skip`` fires none of the missed slots;
- ``coalesce`` (the default) fires one task for all of them, stamped with the first missed slot;
- ``all`` fires each missed slot, the first ``cap`` of them.

Every choice depends only on the stored ``next_fire_at`` and the clock, so schedulers running
side by side choose the same slots, and the unique (schedule, fire time) row makes each fire once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from taskrt.scheduler.cron import CronSchedule

MISFIRE_POLICIES = ("skip", "coalesce", "all")
MAX_ON_TIME = 10_000
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class FirePlan:
    """The slots to fire now and the schedule's next fire time afterwards."""

    fire: list[datetime]
    next_fire_at: datetime
    missed: bool


def plan_fires(
    cron: CronSchedule,
    next_fire_at: datetime,
    now: datetime,
    *,
    policy: str,
    grace: float,
    cap: int,
) -> FirePlan:
    """Slots to fire for a schedule whose stored next fire time is ``next_fire_at``."""
    cutoff = now - timedelta(seconds=grace)
    fire: list[datetime] = []
    missed = next_fire_at < cutoff
    if missed:
        if policy == "all":
            fire.extend(cron.slots_between(next_fire_at, cutoff - _TICK, cap))
        elif policy == "coalesce":
            fire.append(next_fire_at)
        on_time_from = cutoff
    else:
        on_time_from = next_fire_at
    fire.extend(cron.slots_between(on_time_from, now, MAX_ON_TIME))
    return FirePlan(fire=fire, next_fire_at=cron.next_after(now), missed=missed)
