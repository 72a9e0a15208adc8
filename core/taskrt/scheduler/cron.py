"""Fire times of a cron schedule in its IANA time zone, with explicit daylight-saving rules.

Expressions have five fields (minute precision) or six with **seconds first**
(``*/10 * * * * *`` fires every ten seconds), as robfig/cron and Quartz write them. Times are
computed on the schedule's local wall clock with croniter, then mapped to UTC:

- a local time that does not exist (the hour skipped when clocks spring forward) fires once, at
  the first valid instant after the gap (for ``30 2 * * *`` in Europe/Berlin: 03:00 CEST); several
  skipped times collapse into that one fire;
- a local time that occurs twice (the hour repeated when clocks fall back) fires once, at its
  first occurrence. Schedules whose hour field is ``*`` (they run every hour, like ``*/15 * * * *``)
  are interval-like instead: they keep firing through the repeated hour, on both passes, as
  Vixie cron does, so an every-15-minutes job does not stop for an hour.

Everything here is pure: ``after`` is passed in, so tests inject any clock.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskrt.exceptions import ValidationError

MAX_SCAN = 10_000  # candidates examined before giving up (an expression that never fires)
_RANDOM_OR_HASHED = re.compile(r"(^|,)[RH](\(|/|,|$)", re.IGNORECASE)
FOLD_MARGIN = timedelta(hours=3)  # wider than any daylight-saving shift in the tz database


def _croniter() -> Any:
    # imported on first use: importing croniter runs `platform.architecture()`, which spawns a
    # subprocess, and `import taskrt` (or any of its modules) must have no side effects
    from croniter import croniter

    return croniter


def parse_timezone(name: str) -> ZoneInfo:
    """The zone called ``name``; ValidationError naming it if there is no such zone."""
    try:
        return ZoneInfo(name)
    # OSError: a key naming a folder of the tz database ("America") is no zone either
    except (ZoneInfoNotFoundError, ValueError, TypeError, OSError):
        raise ValidationError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'",
            [{"loc": ["timezone"], "msg": f"unknown time zone {name!r}"}],
        ) from None


@dataclass(frozen=True)
class CronSchedule:
    """A validated cron expression in a time zone."""

    expression: str
    timezone: str

    def __post_init__(self) -> None:
        fields = self.expression.split()
        if len(fields) not in (5, 6):
            raise ValidationError(
                f"invalid cron expression {self.expression!r}: give 5 fields "
                "(minute hour day month weekday) or 6 with seconds first",
                [{"loc": ["cron"], "msg": "expected 5 or 6 fields"}],
            )
        if any(_RANDOM_OR_HASHED.search(field) for field in fields):
            # croniter's random and hashed fields would give each scheduler different slots
            raise ValidationError(
                f"invalid cron expression {self.expression!r}: random (R) and hashed (H) "
                "fields are not supported",
                [{"loc": ["cron"], "msg": "random and hashed fields are not supported"}],
            )
        if not _croniter().is_valid(self.expression, second_at_beginning=len(fields) == 6):
            raise ValidationError(
                f"invalid cron expression {self.expression!r}: a field is out of range or "
                "malformed",
                [{"loc": ["cron"], "msg": "invalid cron expression"}],
            )
        parse_timezone(self.timezone)

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def has_seconds(self) -> bool:
        """True for six-field expressions."""
        return len(self.expression.split()) == 6

    @property
    def every_hour(self) -> bool:
        """True when the hour field is ``*``: the schedule is interval-like (see module doc)."""
        fields = self.expression.split()
        return fields[2 if self.has_seconds else 1] == "*"

    def _candidates(self, start_local: datetime) -> Iterator[datetime]:
        it = _croniter()(self.expression, start_local, second_at_beginning=self.has_seconds)
        for _ in range(MAX_SCAN):
            yield it.get_next(datetime)

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after`` (an aware datetime), in UTC."""
        after = after.astimezone(UTC)
        zone = self.zone
        wall = after.astimezone(zone)
        found = self._first_after(wall.replace(tzinfo=None), after, zone, second_pass_only=False)
        if self.every_hour and wall.fold == 0 and _is_repeated(wall.replace(tzinfo=None), zone):
            # `after` is in the first pass of a repeated hour: the second pass starts at an
            # earlier wall time, and an interval-like schedule fires there too
            change = _clock_change(after, after + FOLD_MARGIN, zone)
            fold_start = change.astimezone(zone).replace(tzinfo=None) - timedelta(microseconds=1)
            second = self._first_after(fold_start, after, zone, second_pass_only=True)
            found = min(found, second)
        return found

    def _first_after(
        self, start: datetime, after: datetime, zone: ZoneInfo, *, second_pass_only: bool
    ) -> datetime:
        from croniter import CroniterBadDateError

        try:
            for local in self._candidates(start):
                instants = self._instants(local, zone)
                if second_pass_only:
                    instants = instants[-1:]
                later = [i for i in instants if i > after]
                if later:
                    return min(later)
        except CroniterBadDateError:  # croniter found no date at all (`0 0 31 2 *`)
            pass
        raise ValidationError(
            f"cron expression {self.expression!r} never fires (no such date, e.g. 31 February)",
            [{"loc": ["cron"], "msg": "the expression never fires"}],
        )

    def upcoming(self, after: datetime, count: int) -> list[datetime]:
        """The next ``count`` fire times after ``after``, in UTC."""
        times: list[datetime] = []
        cursor = after
        for _ in range(count):
            cursor = self.next_after(cursor)
            times.append(cursor)
        return times

    def slots_between(self, start: datetime, end: datetime, limit: int) -> list[datetime]:
        """Fire times t with start <= t <= end (UTC): the earliest ``limit`` of them."""
        slots: list[datetime] = []
        cursor = start - timedelta(microseconds=1)
        while len(slots) < limit:
            cursor = self.next_after(cursor)
            if cursor > end:
                break
            slots.append(cursor)
        return slots

    def _instants(self, local: datetime, zone: ZoneInfo) -> list[datetime]:
        """The UTC instants a naive local wall time maps to under this module's DST rules."""
        first = local.replace(tzinfo=zone, fold=0).astimezone(UTC)
        second = local.replace(tzinfo=zone, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        exists_first = first.astimezone(zone).replace(tzinfo=None) == local
        exists_second = second.astimezone(zone).replace(tzinfo=None) == local
        if exists_first and exists_second:  # repeated wall time (fall back)
            earlier, later = sorted((first, second))
            return [earlier, later] if self.every_hour else [earlier]
        return [_end_of_gap(local, zone, min(first, second), max(first, second))]


def _end_of_gap(local: datetime, zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The first instant whose local wall time is at or after ``local`` (which falls in a gap)."""
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).replace(tzinfo=None) >= local:
            high = mid
        else:
            low = mid
    return high.replace(microsecond=0) if high.microsecond else high


def _is_repeated(local: datetime, zone: ZoneInfo) -> bool:
    """True if the wall time ``local`` occurs twice (clocks fall back over it)."""
    first = local.replace(tzinfo=zone, fold=0)
    second = local.replace(tzinfo=zone, fold=1)
    return first.utcoffset() != second.utcoffset() and all(
        t.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local for t in (first, second)
    )


def _clock_change(low: datetime, high: datetime, zone: ZoneInfo) -> datetime:
    """The instant in (low, high] at which ``zone``'s UTC offset changes (to the second)."""
    start_offset = low.astimezone(zone).utcoffset()
    while high - low > timedelta(seconds=1):
        mid = low + (high - low) / 2
        if mid.astimezone(zone).utcoffset() == start_offset:
            low = mid
        else:
            high = mid
    return high.replace(microsecond=0) if high.microsecond else high
