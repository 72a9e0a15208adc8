"""Writing outcomes in batches: one thread groups finishes over a few milliseconds and writes
each group with one store transaction and one Redis pipeline.

No outcome may stop the others: a batch the store refuses for its data (a value out of range,
text it cannot hold) is written again one outcome at a time, and an outcome that is still
refused is replaced by a failure that dead-letters its task with reason
``unwritable_outcome``. Only errors of the connection (the store or Redis away) are retried as
they are, until they pass.

Once a batch is written, the worker's bookkeeping runs (``on_written``), then the "runs
finished" event is emitted with the retries and dead letters it caused (docs/concepts/events.md).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

import psycopg
import redis
import sqlalchemy as sa

from taskrt import logs, metrics
from taskrt.events import Events
from taskrt.exceptions import BackendUnavailableError
from taskrt.outcomes import MAX_ERROR_MESSAGE, storable_text
from taskrt.plugins import Observers
from taskrt.queue.base import QueueBackend
from taskrt.records import FinishReport, RunFinish, WorkerIdentity
from taskrt.worker.execution import ActiveRun

log = logging.getLogger("taskrt.worker")

BATCH_WINDOW = 0.002
BATCH_MAX = 256
RETRY_BACKOFF_MAX = 5.0
UNWRITABLE = "unwritable_outcome"

_TRANSIENT: tuple[type[BaseException], ...] = (
    BackendUnavailableError,
    ConnectionError,
    TimeoutError,
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.DisconnectionError,
    sa.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.ReadOnlyError,
)


def is_transient(exc: BaseException) -> bool:
    """True for errors that say the store or Redis is unreachable or busy (retry as is);
    False for errors about what was written (a data error: isolate the outcome)."""
    if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _TRANSIENT)


def unwritable(finish: RunFinish, exc: BaseException) -> RunFinish:
    """The failure recorded instead of an outcome the store refused: it dead-letters the
    task (no retry: the retry's own values may be what was refused) with the reason why."""
    error = storable_text(f"{type(exc).__name__}: {exc}")[:MAX_ERROR_MESSAGE]
    return RunFinish(
        run=finish.run,
        status="failed",
        error_type="taskrt.UnwritableOutcome",
        error_message=(
            f"the run ended {finish.status!r} but the store refused to record that outcome "
            f"({error})"
        ),
        reason=UNWRITABLE,
        start_delay=finish.start_delay,
    )


class Finisher:
    """A thread that writes run outcomes; retries a batch until the store takes it."""

    def __init__(
        self,
        backend: QueueBackend,
        identity: WorkerIdentity,
        on_written: Callable[[list[ActiveRun], FinishReport], None],
        observers: Observers | None = None,
    ) -> None:
        self.backend = backend
        self.identity = identity
        self.on_written = on_written
        self.events = None if observers is None else Events(observers)
        """Where "runs finished" goes; None emits nothing (a finisher tested on its own)."""
        self._queue: queue.SimpleQueue[tuple[ActiveRun, RunFinish] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="taskrt-finisher", daemon=True)
        self._pending = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._last_error: BaseException | None = None

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def submit(self, active: ActiveRun, finish: RunFinish) -> None:
        """Queue an outcome for writing."""
        with self._lock:
            self._pending += 1
        self._queue.put((active, finish))

    @property
    def pending(self) -> int:
        """Outcomes not yet written."""
        return self._pending

    def wait_flushed(self, timeout: float) -> bool:
        """Wait until every submitted outcome is written (or ``timeout`` passes)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _collect(
        self, first: tuple[ActiveRun, RunFinish]
    ) -> tuple[list[tuple[ActiveRun, RunFinish]], bool]:
        batch = [first]
        deadline = time.monotonic() + BATCH_WINDOW
        while len(batch) < BATCH_MAX:
            remaining = deadline - time.monotonic()
            try:
                item = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch, stopping = self._collect(first)
            self._write(batch)
        # drain anything left after the stop marker
        leftover = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                leftover.append(item)
        if leftover:
            self._write(leftover)

    def _write(self, batch: list[tuple[ActiveRun, RunFinish]]) -> None:
        actives = [a for a, _ in batch]
        report = self._store([f for _, f in batch])
        if report is None:  # refused for its data: one by one, so one bad outcome blocks none
            report = FinishReport()
            for _active, finish in batch:
                _merge(report, self._write_one(finish))
        try:
            self.on_written(actives, report)
        except Exception:  # bookkeeping must not stop the writer
            log.exception("after-write bookkeeping failed")
        if report.won and self.events is not None:  # counted and logged by its subscribers
            ran = {active.run.run_id: active.ran_seconds for active in actives}
            self.events.runs_finished(report.won, ran, self.identity.id)
        with self._idle:
            self._pending -= len(batch)
            self._idle.notify_all()

    def _write_one(self, finish: RunFinish) -> FinishReport:
        # tried once more on its own even when it was alone in its batch: a refusal that does
        # not repeat must not cost the run its outcome
        report = self._store([finish], single=True)
        if report is not None:
            return report
        replacement = unwritable(finish, self._last_error or RuntimeError("unknown error"))
        run = finish.run
        metrics.outcome_unwritable(run.queue, run.name, tenant=run.tenant)
        log.error(
            "run %s: the store refused its outcome %r (%s); recording it as failed (%s)",
            run.run_id,
            finish.status,
            self._last_error,
            UNWRITABLE,
            extra=logs.run_fields(run, self.identity.id),
        )
        report = self._store([replacement], single=True)
        if report is not None:
            return report
        # not even the failure can be written: let go of the run; its lease lapses and the
        # reaper ends it lost, so it never holds this worker up
        log.error(
            "run %s: the store refused even its failure (%s); its lease will expire",
            run.run_id,
            self._last_error,
            extra=logs.run_fields(run, self.identity.id),
        )
        return FinishReport()

    def _store(self, finishes: list[RunFinish], single: bool = False) -> FinishReport | None:
        """Write ``finishes``, retrying while the store or Redis is away; None (the error in
        ``_last_error``) when they were refused for their data."""
        delay = 0.05
        while True:
            try:
                return self.backend.finish(finishes, self.identity)
            except Exception as exc:
                if not is_transient(exc):
                    self._last_error = exc
                    what = "an outcome" if single else f"a batch of {len(finishes)} outcome(s)"
                    log.warning("the store refused %s: %s", what, exc)
                    return None
                log.error(
                    "writing %d outcome(s) failed (%s); retrying in %.2f s",
                    len(finishes),
                    exc,
                    delay,
                )
                time.sleep(delay)
                delay = min(delay * 2, RETRY_BACKOFF_MAX)


def _merge(into: FinishReport, part: FinishReport) -> None:
    into.won.extend(part.won)
    into.fenced.extend(part.fenced)
    into.retries.extend(part.retries)
    into.recovered.extend(part.recovered)
    into.unclaimed.extend(part.unclaimed)
