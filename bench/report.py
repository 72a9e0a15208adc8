"""Figures with their targets (issues 9 and 15), the printed table and the JSON document."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
}


@dataclass(frozen=True)
class Target:
    """A figure must be ``op`` ``value`` (``>= 4000``)."""

    op: str
    value: float

    def met(self, measured: float) -> bool:
        """Whether ``measured`` meets the target."""
        return OPS[self.op](measured, self.value)


@dataclass(frozen=True)
class Figure:
    """One row of the table."""

    id: str
    label: str
    unit: str
    value: float | None
    target: Target | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        """True or False against the target; None without a target or a value."""
        if self.target is None or self.value is None:
            return None
        return self.target.met(self.value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "id": self.id,
            "label": self.label,
            "unit": self.unit,
            "value": self.value,
            "target": f"{self.target.op} {self.target.value:g}" if self.target else None,
            "met": self.met,
            "note": self.note,
        }


# Physical limits, with issue 9's reference machine in the label (no targets).
CALIBRATION = [
    ("redis_ping_us", "Limit: Redis PING round trip (ref. ~150)", "us"),
    ("pg_select1_us", "Limit: PostgreSQL SELECT 1 round trip", "us"),
    ("pg_commits_per_s", "Limit: PostgreSQL 1-row commits (ref. ~2,700)", "rows/s"),
    ("pg_copy_rows_per_s", "Limit: PostgreSQL COPY (ref. ~350,000)", "rows/s"),
]
# Targets of issue 9 ("Targets"): Redis backend unless the figure says otherwise.
ENQUEUE = [
    ("client_single", "Enqueue, client, one at a time", "tasks/s", Target(">=", 2000)),
    ("client_threads", "Enqueue, client, 8 threads", "tasks/s", Target(">=", 5000)),
    ("client_many", "Enqueue, client enqueue_many (1,000/call)", "tasks/s", Target(">=", 50_000)),
    ("http_single_1", "Enqueue, HTTP single, 1 connection", "req/s", None),
    ("http_single_8", "Enqueue, HTTP single, 8 connections", "req/s", Target(">=", 1500)),
    ("http_batch_1", "Enqueue, HTTP batch (1,000/req), 1 conn.", "tasks/s", None),
    ("http_batch_2", "Enqueue, HTTP batch (1,000/req), 2 conn.", "tasks/s", Target(">=", 20_000)),
]
DRAIN_TARGETS = {
    ("redis", 1): Target(">=", 4000),
    ("redis", 2): Target(">=", 6000),
    ("postgresql", 1): Target(">=", 1500),
    ("sqlite", 1): Target(">=", 500),
}
BACKEND_NAMES = {"redis": "Redis", "postgresql": "SQL on PostgreSQL", "sqlite": "SQLite"}
PICKUP_TARGETS = {"redis": (Target("<", 1.5), Target("<", 5.0))}
RSS_IDLE_TARGET = Target("<=", 80)
FETCH_RATIO_TARGET = Target("<=", 1.10)
MEMORY_TARGET = Target("<=", 200)
CPU_GROUPS = (("worker", "worker"), ("postgresql", "PostgreSQL"), ("redis", "Redis"))
# Targets of issue 15 ("Done when"): drain keeps 80% of its rate while a prune runs; every
# search filter answers its first page in under 50 ms (p95) at 2,000,000 tasks.
HISTORY_DRAIN_RATIO_TARGET = Target(">=", 0.80)
SEARCH_P95_TARGET = Target("<", 50)


def _get(data: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def figures(results: dict[str, Any]) -> list[Figure]:
    """Every figure the results hold, in table order."""
    rows: list[Figure] = []
    for key, label, unit in CALIBRATION:
        value = _get(results, "calibrate", key)
        if value is not None or "calibrate" in results:
            rows.append(Figure(f"calibrate.{key}", label, unit, value))
    enqueue = results.get("enqueue")
    if enqueue is not None:
        for key, label, unit, target in ENQUEUE:
            rows.append(Figure(f"enqueue.{key}", label, unit, _get(enqueue, key, "per_s"), target))
    for item in results.get("drain", []):
        backend, workers = item["backend"], item["workers"]
        rows.append(
            Figure(
                f"drain.{backend}.{workers}",
                f"Drain, {BACKEND_NAMES[backend]}, {workers} process{'es' if workers > 1 else ''}"
                f" x {item['concurrency']}",
                "tasks/s",
                item.get("tasks_per_s"),
                DRAIN_TARGETS.get((backend, workers)),
            )
        )
    for item in results.get("drain", []):
        if (item["backend"], item["workers"]) != ("redis", 1):
            continue  # every drain has the split in the JSON; the table shows the main one
        for group, label in CPU_GROUPS:
            rows.append(
                Figure(
                    f"drain.redis.1.cpu.{group}",
                    f"CPU per task in Redis drain x1: {label}",
                    "us",
                    _get(item, "cpu_us_per_task", group),
                )
            )
    for item in results.get("pickup", []):
        backend = item["backend"]
        p50_target, p99_target = PICKUP_TARGETS.get(backend, (None, None))
        rate = f"{item['rate_per_s']:g}/s"
        name = BACKEND_NAMES[backend]
        rows.append(
            Figure(
                f"pickup.{backend}.p50",
                f"Pickup latency p50, {name}, {rate}",
                "ms",
                item.get("p50_ms"),
                p50_target,
            )
        )
        rows.append(
            Figure(
                f"pickup.{backend}.p99",
                f"Pickup latency p99, {name}, {rate}",
                "ms",
                item.get("p99_ms"),
                p99_target,
            )
        )
    rss = results.get("rss")
    if rss is not None:
        rows.append(
            Figure(
                "rss.idle",
                "Worker RSS idle (-c 8, after a few tasks)",
                "MiB",
                rss.get("idle_mib"),
                RSS_IDLE_TARGET,
            )
        )
        rows.append(
            Figure("rss.load", "Worker RSS under load (peak in drain)", "MiB", rss.get("load_mib"))
        )
    depth = results.get("depth")
    if depth is not None and "depths" in depth:
        small, large = depth["small"], depth["large"]
        for size in (small, large):
            rows.append(
                Figure(
                    f"depth.fetch.{size}",
                    f"Fetch script p50 at {size:,} queued",
                    "us",
                    _get(depth, "depths", str(size), "fetch", "p50_us"),
                )
            )
        rows.append(
            Figure(
                "depth.fetch.ratio",
                f"Fetch p50, {large:,} / {small:,} queued",
                "ratio",
                depth.get("fetch_p50_ratio"),
                FETCH_RATIO_TARGET,
            )
        )
        for size in (small, large):
            rows.append(
                Figure(
                    f"depth.memory.{size}",
                    f"Redis memory per queued task, {size:,}",
                    "bytes",
                    _get(depth, "depths", str(size), "bytes_per_task"),
                    MEMORY_TARGET,
                )
            )
        for backend, by_depth in (depth.get("acquire") or {}).items():
            for size, stats in by_depth.items():
                rows.append(
                    Figure(
                        f"depth.acquire.{backend}.{size}",
                        f"acquire(1) p50, {BACKEND_NAMES[backend]}, {int(size):,} queued",
                        "us",
                        stats.get("p50_us"),
                    )
                )
    history = results.get("history")
    if history is not None:
        rows += _history(history)
    return rows


def _overlap(manual: dict[str, Any], step: str) -> str:
    whole = _get(manual, "concurrent_prune", step, "overlap_whole")
    return "" if whole else " (prune did NOT overlap it all)"


def _auto_pruning(history: dict[str, Any]) -> list[Figure]:
    """The primary figure: drain and pickup with the worker's automatic pruning working off a
    backlog versus the same worker without, medians of the interleaved rounds."""
    auto = history.get("auto_pruning")
    if not isinstance(auto, dict) or "drain" not in auto:
        return []
    drained, picked = auto["drain"], auto.get("pickup", {})
    rounds = len(drained.get("baseline") or [])
    each = f"median of {rounds}" if rounds > 1 else "one round"
    flag = "" if auto.get("valid") else " (NOT VALID: see phases)"

    def listed(values: list[float] | None, fmt: str) -> str:
        return ", ".join(format(v, fmt) for v in values or [])

    phases = auto.get("phases") or [{}]
    rate = _get(phases[0], "pickup", "rate_per_s")
    return [
        Figure(
            "history.drain.baseline",
            f"Drain on the history, Redis x 8, no pruning ({each})",
            "tasks/s",
            drained.get("baseline_median"),
            note=listed(drained.get("baseline"), ",.0f"),
        ),
        Figure(
            "history.drain.pruning",
            f"Drain, worker's automatic pruning working a backlog off ({each}){flag}",
            "tasks/s",
            drained.get("pruning_median"),
            note=listed(drained.get("pruning"), ",.0f"),
        ),
        Figure(
            "history.drain.ratio",
            "Drain with automatic pruning / without",
            "ratio",
            drained.get("ratio"),
            HISTORY_DRAIN_RATIO_TARGET,
        ),
        Figure(
            "history.drain.prune_rate",
            "Automatic pruning's rate during the drains (median)",
            "tasks/s",
            drained.get("prune_rate_median"),
        ),
        Figure(
            "history.pickup.baseline.p99",
            f"Pickup p99 on the history, {rate or 0:g}/s, no pruning ({each})",
            "ms",
            picked.get("baseline_p99_median"),
            note=listed(picked.get("baseline_p99"), ".1f"),
        ),
        Figure(
            "history.pickup.pruning.p99",
            f"Pickup p99, {rate or 0:g}/s, automatic pruning ({each}){flag}",
            "ms",
            picked.get("pruning_p99_median"),
            note=listed(picked.get("pruning_p99"), ".1f"),
        ),
        Figure(
            "history.pickup.p99_ratio",
            "Pickup p99 with automatic pruning / without",
            "ratio",
            picked.get("p99_ratio"),
        ),
    ]


def _manual_prune(history: dict[str, Any]) -> list[Figure]:
    """The secondary, informational figures (no target): drain and pickup while an operator's
    ``taskrt prune`` runs flat out."""
    manual = history.get("manual_prune")
    if not isinstance(manual, dict) or "drain" not in manual:
        return []
    rows = [
        Figure(
            "history.manual_prune.drain",
            "Drain while taskrt prune runs flat out" + _overlap(manual, "drain"),
            "tasks/s",
            _get(manual, "drain", "tasks_per_s"),
        ),
        Figure(
            "history.manual_prune.drain_ratio",
            "Drain while taskrt prune / no-pruning median (info)",
            "ratio",
            manual.get("drain_ratio_to_baseline_median"),
        ),
        Figure(
            "history.manual_prune.prune_rate",
            "taskrt prune's rate during that drain",
            "tasks/s",
            _get(manual, "concurrent_prune", "drain", "tasks_deleted_per_s"),
        ),
    ]
    if "pickup" in manual:
        rows.append(
            Figure(
                "history.manual_prune.pickup.p99",
                "Pickup p99 while taskrt prune runs flat out" + _overlap(manual, "pickup"),
                "ms",
                _get(manual, "pickup", "p99_ms"),
            )
        )
    return rows


def _history(history: dict[str, Any]) -> list[Figure]:
    """The history-at-scale figures (bench.history), as far as they were measured."""
    rows: list[Figure] = []
    seeded = _get(history, "sizes", "tasks") or 0
    before = _get(history, "search_before_prune")
    if before is not None:
        for label, stats in before["filters"].items():
            rows.append(
                Figure(
                    f"history.search.{label.replace(' ', '_')}.p95",
                    f"Search p95 at {seeded:,} tasks: {label}",
                    "ms",
                    stats.get("p95_ms"),
                    SEARCH_P95_TARGET,
                    note=f"{stats.get('rows')} rows on the first page",
                )
            )
        rows.append(
            Figure(
                "history.search.page2.max_p95",
                f"Search p95 at {seeded:,} tasks, 2nd page, worst filter",
                "ms",
                before.get("max_p95_page2_ms"),
            )
        )
    pruned = _get(history, "prune")
    if pruned is not None:
        tasks = pruned["deleted"]["tasks"]
        rows += [
            Figure(
                "history.prune.seconds",
                f"Prune {tasks:,} finished tasks with their runs",
                "s",
                pruned.get("seconds"),
            ),
            Figure(
                "history.prune.tasks_per_s",
                "Prune rate, tasks",
                "tasks/s",
                pruned.get("tasks_per_s"),
            ),
            Figure(
                "history.prune.rows_per_s",
                "Prune rate, tasks + runs",
                "rows/s",
                pruned.get("rows_per_s"),
            ),
        ]
    for table, name in (("tasks", "task"), ("task_runs", "run")):
        per_row = _get(history, "sizing_before", table, "bytes_per_row")
        if per_row is not None:
            rows.append(
                Figure(
                    f"history.sizing.{name}_bytes",
                    f"PostgreSQL bytes per {name} (heap, TOAST, indexes)",
                    "bytes",
                    per_row,
                )
            )
    after = _get(history, "search_after_prune")
    if after is not None:
        left = _get(history, "sizing_after_prune", "tasks", "rows") or 0
        rows.append(
            Figure(
                "history.search.after_prune.max_p95",
                f"Search p95 at {left:,} tasks (after prune), worst filter",
                "ms",
                after.get("max_p95_ms"),
                SEARCH_P95_TARGET,
                note=str(after.get("max_p95_filter")),
            )
        )
    rows += _auto_pruning(history)
    rows += _manual_prune(history)
    return rows


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "error"
    if unit in ("tasks/s", "req/s", "rows/s", "us"):
        return f"{value:,.0f}"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit in ("MiB", "bytes"):
        return f"{value:,.1f}"
    return f"{value:,.2f}"


def table(rows: list[Figure]) -> str:
    """The figures as a plain-text table."""
    header = ("Figure", "Value", "Unit", "Target", "")
    lines = [
        (
            f.label,
            _number(f.value, f.unit),
            f.unit,
            f"{f.target.op} {f.target.value:,g}" if f.target else "",
            {True: "met", False: "MISSED", None: ""}[f.met],
        )
        for f in rows
    ]
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header))]

    def fmt(row: tuple[str, ...]) -> str:
        cells = [
            row[0].ljust(widths[0]),
            row[1].rjust(widths[1]),
            row[2].ljust(widths[2]),
            row[3].ljust(widths[3]),
            row[4],
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths).rstrip()
    return "\n".join([fmt(header), rule, *(fmt(row) for row in lines)])
