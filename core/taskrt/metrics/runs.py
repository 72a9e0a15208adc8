"""Run outcomes, retries, dead letters, lost runs, start latency and duration.

These are the worker's hot-path numbers: its finisher thread records every written outcome, its
maintenance thread every lost run (both as subscribers of the run events, see
:mod:`taskrt.subscribers`). Each thread keeps its own numbers (``threading.local``), so
recording takes no lock and costs a few dictionary and list operations; a scrape adds up every
thread's numbers (copying a dict or list is atomic under the GIL). This is a fifth of what
prometheus-client's labelled children cost per run, which a worker running thousands of no-op
tasks a second notices.
"""

from __future__ import annotations

import threading
import uuid
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from taskrt.metrics.catalog import (
    COMMON_DEAD_LETTER_REASONS,
    COMMON_RETRY_REASONS,
    DEAD_LETTERED_INFO,
    DURATION_BUCKETS,
    OUTCOMES,
    RETRIES_INFO,
    RUN_DURATION_INFO,
    RUN_START_LATENCY_INFO,
    RUNS_FINISHED_INFO,
    START_LATENCY_BUCKETS,
    tenant_label,
)

if TYPE_CHECKING:
    from taskrt.records import ClaimedRun, LostRun, RunFinish


class TimedRun(Protocol):
    """A run with how long its handler ran (the worker's active runs are such)."""

    @property
    def run(self) -> ClaimedRun:
        """The claimed run."""

    @property
    def ran_seconds(self) -> float | None:
        """Seconds its handler ran; None if it never started."""


class _Tally:
    """What one thread recorded about the runs of one (tenant, queue, task type)."""

    __slots__ = ("dead", "duration", "duration_sum", "finished", "retries", "start", "start_sum")

    def __init__(self) -> None:
        self.finished = dict.fromkeys(OUTCOMES, 0)
        # the common reasons exist from the first run of a type on, so increase() and rate()
        # see their first event (a series that starts at 1 shows no increase)
        self.retries = dict.fromkeys(COMMON_RETRY_REASONS, 0)
        self.dead = dict.fromkeys(COMMON_DEAD_LETTER_REASONS, 0)
        self.start = [0] * (len(START_LATENCY_BUCKETS) + 1)  # per bucket, the last is +Inf
        self.start_sum = 0.0
        self.duration = [0] * (len(DURATION_BUCKETS) + 1)
        self.duration_sum = 0.0


_local = threading.local()
_tallies: list[dict[tuple[str, str, str], _Tally]] = []
"""Every recording thread's tallies, by (tenant label, queue, task type); kept after the thread
ends."""


def _tally(tenant: str, queue: str, task_type: str) -> _Tally:
    key = (tenant_label(tenant), queue, task_type)
    try:
        mine: dict[tuple[str, str, str], _Tally] = _local.tallies
    except AttributeError:
        mine = _local.tallies = {}
        _tallies.append(mine)
    tally = mine.get(key)
    if tally is None:
        tally = mine[key] = _Tally()
    return tally


def runs_written(finishes: Sequence[RunFinish], actives: Iterable[TimedRun] = ()) -> None:
    """Count outcomes the store accepted, with the retries and dead letters they caused, and
    the start latency and duration of each run that ran (``actives`` say how long)."""
    record_finishes(finishes, {active.run.run_id: active.ran_seconds for active in actives})


def record_finishes(
    finishes: Sequence[RunFinish], ran_seconds: Mapping[uuid.UUID, float | None]
) -> None:
    """:func:`runs_written` with the handlers' run times by run id (None: it never ran)."""
    for finish in finishes:
        run = finish.run
        tally = _tally(run.tenant, run.queue, run.name)
        status = finish.status
        tally.finished[status] += 1
        if status == "failed":
            if finish.retry_delay is not None:
                reason = finish.reason or "error"
                tally.retries[reason] = tally.retries.get(reason, 0) + 1
            else:
                reason = finish.reason or "retries_exhausted"
                tally.dead[reason] = tally.dead.get(reason, 0) + 1
        seconds = ran_seconds.get(run.run_id)
        if seconds is None:
            continue  # it never started (cancelled first, unknown task type)
        tally.duration[bisect_left(DURATION_BUCKETS, seconds)] += 1
        tally.duration_sum += seconds
        if run.started_at is not None:
            due = max(run.enqueued_at, run.available_at)
            latency = max((run.started_at - due).total_seconds() + finish.start_delay, 0.0)
            tally.start[bisect_left(START_LATENCY_BUCKETS, latency)] += 1
            tally.start_sum += latency


def runs_lost(lost: Sequence[LostRun]) -> None:
    """Count runs a maintenance pass found lost, and the retry or dead letter that followed."""
    for run in lost:
        tally = _tally(run.tenant, run.queue, run.task_name)
        tally.finished["lost"] += 1
        if run.next_run is not None:
            tally.retries["lost"] += 1
        elif run.outcome == "dead_letter":
            tally.dead["lost"] += 1


def _cumulative(
    bounds: Sequence[float], counts: Sequence[int]
) -> tuple[list[tuple[str, float]], int]:
    """Prometheus buckets (``le``, observations at or below it) from per-bucket counts."""
    buckets, total = [], 0
    for bound, count in zip([*bounds, float("inf")], counts, strict=True):
        total += count
        buckets.append((floatToGoString(bound), float(total)))  # type: ignore[no-untyped-call]
    return buckets, total


class RunsCollector(Collector):
    """Run outcomes, retries, dead letters, start latency and duration: every recording
    thread's tallies added up."""

    def describe(self) -> Iterator[Metric]:
        yield CounterMetricFamily(RUNS_FINISHED_INFO.name, RUNS_FINISHED_INFO.help)
        yield CounterMetricFamily(RETRIES_INFO.name, RETRIES_INFO.help)
        yield CounterMetricFamily(DEAD_LETTERED_INFO.name, DEAD_LETTERED_INFO.help)
        yield HistogramMetricFamily(RUN_START_LATENCY_INFO.name, RUN_START_LATENCY_INFO.help)
        yield HistogramMetricFamily(RUN_DURATION_INFO.name, RUN_DURATION_INFO.help)

    def collect(self) -> Iterator[Metric]:
        finished: dict[tuple[str, ...], int] = {}
        retries: dict[tuple[str, ...], int] = {}
        dead: dict[tuple[str, ...], int] = {}
        start: dict[tuple[str, str, str], tuple[list[int], float]] = {}
        duration: dict[tuple[str, str, str], tuple[list[int], float]] = {}
        for mine in list(_tallies):
            for key, tally in list(mine.items()):  # copies: the owner may add meanwhile
                for into, counts in (
                    (finished, tally.finished),
                    (retries, tally.retries),
                    (dead, tally.dead),
                ):
                    for label, value in list(counts.items()):
                        into[(*key, label)] = into.get((*key, label), 0) + value
                for into_h, per_bucket, total in (
                    (start, tally.start, tally.start_sum),
                    (duration, tally.duration, tally.duration_sum),
                ):
                    have, have_sum = into_h.get(key, ([0] * len(per_bucket), 0.0))
                    added = [a + b for a, b in zip(have, list(per_bucket), strict=True)]
                    into_h[key] = (added, have_sum + total)
        for info, values in (
            (RUNS_FINISHED_INFO, finished),
            (RETRIES_INFO, retries),
            (DEAD_LETTERED_INFO, dead),
        ):
            family = CounterMetricFamily(info.name, info.help, labels=info.labels)
            for labels, value in values.items():
                family.add_metric(list(labels), value)
            yield family
        for info, bounds, values_h in (
            (RUN_START_LATENCY_INFO, START_LATENCY_BUCKETS, start),
            (RUN_DURATION_INFO, DURATION_BUCKETS, duration),
        ):
            histogram = HistogramMetricFamily(info.name, info.help, labels=info.labels)
            for labels_h, (counts_h, total_sum) in values_h.items():
                cumulative, _ = _cumulative(bounds, counts_h)
                histogram.add_metric(list(labels_h), cumulative, total_sum)
            yield histogram
