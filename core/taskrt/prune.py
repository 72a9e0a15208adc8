"""Pruning the history by the retention settings: ``taskrt prune``, ``POST
/api/v1/admin/prune`` and the automatic step of every worker's maintenance pass.

A prune deletes finished tasks (with their runs), audit rows and schedule fires older than
their retention, one small transaction at a time (:mod:`taskrt.store.pruning`). An archive, when
asked for, receives every pruned task with its runs as one JSON line, written and fsynced
before the batch's delete commits. docs/how-to/retention.md describes the settings and the
archive format.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from taskrt import metrics
from taskrt.exceptions import ValidationError
from taskrt.records import Actor
from taskrt.settings import Settings
from taskrt.settings_values import parse_duration
from taskrt.store import Store
from taskrt.store.pruning import FINISHED_STATUSES, HistoryTable, TaskSelection

log = logging.getLogger("taskrt.prune")

__all__ = [
    "FINISHED_STATUSES",
    "Archive",
    "AutoPruner",
    "PruneCounts",
    "PruneRequest",
    "Pruner",
    "archive_line",
    "parse_older_than",
    "parse_statuses",
    "pause_after",
]

TABLES = ("tasks", "runs", "audit", "schedule_fires")
"""The tables a prune reports counts for, in this order."""

ARCHIVE_FORMAT = 1
"""The ``format`` every archive line carries."""


@dataclass(frozen=True, slots=True)
class PruneRequest:
    """One prune: what ``taskrt prune`` and the HTTP route ask for.

    ``older_than`` (seconds) replaces every retention setting for this run; ``statuses``,
    ``queue`` and ``task_type`` narrow the tasks. ``tenant`` limits the prune to one tenant's
    tasks and audit rows (a tenant admin's prune; schedule fires are then left alone, as in a
    filtered prune); None prunes every tenant (operators, automatic retention). Audit rows
    and schedule fires are pruned only when no task filter is given (they belong to no queue
    or type). ``limit`` caps the rows deleted per table (tasks, audit rows, schedule fires)
    by this run; what is left stays for the next run (:attr:`PruneCounts.more`).
    """

    older_than: float | None = None
    statuses: tuple[str, ...] = FINISHED_STATUSES
    queue: str | None = None
    task_type: str | None = None
    dry_run: bool = False
    limit: int | None = None
    tenant: str | None = None

    def __post_init__(self) -> None:
        unknown = [s for s in self.statuses if s not in FINISHED_STATUSES]
        if unknown or not self.statuses:
            raise ValidationError(
                f"status {', '.join(unknown) or '(none)'} cannot be pruned; give one or more "
                f"of {', '.join(FINISHED_STATUSES)}"
            )
        if self.older_than is not None and self.older_than < 0:
            raise ValidationError("older_than must not be negative")
        if self.limit is not None and self.limit < 1:
            raise ValidationError(f"limit must be at least 1, not {self.limit}")

    @property
    def filtered(self) -> bool:
        """Whether a task filter (status, queue, type) narrows the prune."""
        return (
            self.queue is not None
            or self.task_type is not None
            or set(self.statuses) != set(FINISHED_STATUSES)
        )


def parse_statuses(text: str) -> tuple[str, ...]:
    """``"completed,failed"`` -> ``("completed", "failed")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def parse_older_than(text: str) -> float:
    """A ``--older-than`` duration in seconds, or a one-line error naming the option."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValidationError(f"older_than: {exc}") from None


@dataclass(slots=True)
class PruneCounts:
    """Rows a prune deleted (or, in a dry run, would delete), per table; ``more`` when the
    request's limit stopped it with rows still due."""

    tasks: int = 0
    runs: int = 0
    audit: int = 0
    schedule_fires: int = 0
    more: bool = False

    def to_dict(self) -> dict[str, int]:
        """Counts by table name."""
        return {t: int(getattr(self, t)) for t in TABLES}

    def any(self) -> bool:
        """Whether anything was (or would be) deleted."""
        return any(self.to_dict().values())

    def add(self, other: PruneCounts) -> None:
        """Add ``other``'s rows to these."""
        for table in TABLES:
            setattr(self, table, getattr(self, table) + getattr(other, table))

    def __str__(self) -> str:
        return ", ".join(f"{t}={n}" for t, n in self.to_dict().items())


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def archive_line(task: dict[str, Any], runs: Sequence[dict[str, Any]]) -> str:
    """One archive line: the task's columns, its runs' columns under ``runs`` (by attempt)
    and ``format``; ids as strings, times as ISO 8601 in UTC."""
    record = {k: _jsonable(v) for k, v in task.items()}
    record["runs"] = [{k: _jsonable(v) for k, v in run.items()} for run in runs]
    record["format"] = ARCHIVE_FORMAT
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)


@dataclass
class Archive:
    """A JSON-lines file (gzip when its name ends in ``.gz``) that pruned tasks are appended
    to; each batch is flushed and fsynced before :meth:`write` returns."""

    path: Path
    written: int = 0
    _raw: IO[bytes] | None = field(default=None, repr=False)
    _gzip: gzip.GzipFile | None = field(default=None, repr=False)

    def __enter__(self) -> Archive:
        try:
            self._raw = open(self.path, "ab")  # closed in __exit__
        except OSError as exc:
            raise ValidationError(f"archive {str(self.path)!r}: {exc.strerror}") from None
        if self.path.name.endswith(".gz"):
            self._gzip = gzip.GzipFile(fileobj=self._raw, mode="ab")
        return self

    def write(self, batch: Sequence[tuple[dict[str, Any], list[dict[str, Any]]]]) -> None:
        """Append one line per task and make it durable."""
        assert self._raw is not None, "use Archive as a context manager"
        data = "".join(archive_line(task, runs) + "\n" for task, runs in batch).encode()
        out = self._gzip if self._gzip is not None else self._raw
        out.write(data)
        out.flush()  # GzipFile.flush ends a deflate block (Z_SYNC_FLUSH): readable up to here
        self._raw.flush()
        os.fsync(self._raw.fileno())
        self.written += len(batch)

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        if self._gzip is not None:
            self._gzip.close()
        if self._raw is not None:
            self._raw.flush()
            os.fsync(self._raw.fileno())
            self._raw.close()


class Pruner:
    """Prunes one store by its settings' retention."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.batch_size = settings.retention_batch_size

    def _ages(self, request: PruneRequest) -> tuple[TaskSelection, float, float]:
        s = self.settings
        if request.older_than is not None:
            age = request.older_than
            ages = dict.fromkeys(request.statuses, age)
            audit = fires = age
        else:
            setting = {
                "completed": s.retention_completed,
                "failed": s.retention_failed,
                "cancelled": s.retention_cancelled,
            }
            ages = {status: parse_duration(setting[status]) for status in request.statuses}
            audit = parse_duration(s.retention_audit)
            fires = parse_duration(s.retention_schedule_fires)
        if request.filtered:
            audit = fires = 0.0
        if request.tenant is not None:
            fires = 0.0  # fires belong to schedules of every tenant: left to retention
        selection = TaskSelection(ages, request.queue, request.task_type, tenant=request.tenant)
        return selection, audit, fires

    def run(
        self,
        request: PruneRequest,
        *,
        archive: Archive | None = None,
        actor: Actor | None = None,
    ) -> PruneCounts:
        """Prune everything ``request`` selects, batch after batch (or, for a dry run, count
        it). A real prune by ``actor`` is written to the audit log with its counts."""
        selection, audit_age, fires_age = self._ages(request)
        store = self.store
        if request.dry_run:
            tasks = store.count_prunable_tasks(selection)
            return PruneCounts(
                tasks=tasks.tasks,
                runs=tasks.runs,
                audit=store.count_prunable_history("audit", audit_age, **_only(request.tenant)),
                schedule_fires=store.count_prunable_history("schedule_fires", fires_age),
            )
        counts = PruneCounts()
        sink = archive.write if archive is not None else None
        cap = request.limit
        while cap is None or counts.tasks < cap:
            size = self.batch_size if cap is None else min(self.batch_size, cap - counts.tasks)
            batch = store.prune_tasks(selection, limit=size, archive=sink)
            if batch is None or not batch.tasks:
                break
            counts.tasks += batch.tasks
            counts.runs += batch.runs
        else:
            counts.more = True
        counts.audit, audit_more = self._drain("audit", audit_age, cap, request.tenant)
        counts.schedule_fires, fires_more = self._drain("schedule_fires", fires_age, cap, None)
        counts.more = counts.more or audit_more or fires_more
        metrics.rows_pruned(counts.to_dict())
        if actor is not None:
            details: dict[str, Any] = {"deleted": counts.to_dict()}
            details.update(
                {
                    k: v
                    for k, v in (
                        ("older_than", request.older_than),
                        ("statuses", list(request.statuses) if request.filtered else None),
                        ("queue", request.queue),
                        ("type", request.task_type),
                        ("archive", str(archive.path) if archive else None),
                        ("limit", request.limit),
                        ("tenant", request.tenant),
                    )
                    if v is not None
                }
            )
            store.audit_prune(actor, details)
        return counts

    def _drain(
        self, table: HistoryTable, age: float, cap: int | None, tenant: str | None
    ) -> tuple[int, bool]:
        """Rows deleted from ``table`` (of ``tenant`` only, when given), and whether ``cap``
        stopped it first."""
        total = 0
        while cap is None or total < cap:
            size = self.batch_size if cap is None else min(self.batch_size, cap - total)
            deleted = self.store.prune_history(table, age, limit=size, **_only(tenant))
            if not deleted:
                return total, False
            total += deleted
        return total, True

    def step(self) -> PruneCounts | None:
        """One automatic step: at most one batch per table, holding the prune lock (None:
        another process holds it); ``more`` when a table gave a full batch, so more is likely
        due. Counted in ``taskrt_rows_pruned``."""
        selection, audit_age, fires_age = self._ages(PruneRequest())
        size = self.batch_size
        batch = self.store.prune_tasks(selection, limit=size, exclusive=True)
        if batch is None:
            return None
        counts = PruneCounts(tasks=batch.tasks, runs=batch.runs)
        counts.audit = self.store.prune_history("audit", audit_age, limit=size, exclusive=True) or 0
        counts.schedule_fires = (
            self.store.prune_history("schedule_fires", fires_age, limit=size, exclusive=True) or 0
        )
        counts.more = size in (counts.tasks, counts.audit, counts.schedule_fires)
        metrics.rows_pruned(counts.to_dict())
        return counts


class AutoPruner:
    """Automatic pruning, on a thread of each worker: every ``interval`` seconds it asks for
    the pruning turn (one worker of the fleet holds it at a time); holding it, it works the
    backlog off one step after another, sleeping between steps so that pruning takes at most
    ``duty`` of its time, until a step finds less than a batch due. One log line per turn
    (and per minute of a long one) says what went. An ``interval`` of 0 never prunes."""

    LOG_EVERY = 60.0
    """Seconds between log lines while a long turn goes on."""

    def __init__(self, pruner: Pruner, *, interval: float, duty: float) -> None:
        self.pruner = pruner
        self.interval = interval
        self.duty = duty
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="taskrt-pruner", daemon=True)

    def start(self) -> None:
        """Start the thread (unless automatic pruning is off); its first turn comes after a
        few seconds, so a starting fleet does not prune before it works."""
        if self.interval > 0:
            self._thread.start()

    def stop(self) -> None:
        """Stop after the step in progress (each step is its own transactions)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _loop(self) -> None:
        wait = min(self.interval, 5.0)
        while not self._stop.wait(wait):
            try:
                self.turn()
            except Exception as exc:  # a store outage: the next interval tries again
                log.warning("pruning failed: %s", exc)
            wait = self.interval

    def turn(self) -> PruneCounts | None:
        """One turn: None when another worker holds it, else everything it removed."""
        total = PruneCounts()
        with self.pruner.store.pruning_turn() as held:
            if not held:
                return None
            logged = time.monotonic()
            while True:
                started = time.monotonic()
                counts = self.pruner.step()
                if counts is None:  # a manual exclusive prune holds the batch lock
                    break
                total.add(counts)
                now = time.monotonic()
                if now - logged >= self.LOG_EVERY and total.any():
                    log.info("pruning: %s so far", total)
                    logged = now
                if not counts.more or self._stop.wait(pause_after(now - started, self.duty)):
                    break
        if total.any():
            log.info("pruned: %s", total)
        return total


def _only(tenant: str | None) -> dict[str, Any]:
    """``tenant=`` for the store's history calls when a prune is limited to one tenant (the
    automatic, every-tenant path calls exactly as before)."""
    return {} if tenant is None else {"tenant": tenant}


def pause_after(busy: float, duty: float) -> float:
    """Seconds to sleep after ``busy`` seconds of work so that work takes ``duty`` of the
    time (duty 1: no pause)."""
    return busy * (1.0 - duty) / duty
