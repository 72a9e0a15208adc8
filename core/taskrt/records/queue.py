"""Records that cross the queue backend: runs to dispatch, claimed runs, their finishes, and
what maintenance and lease renewal report."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from taskrt.records.tenancy import DEFAULT_TENANT, address


@dataclass(frozen=True, slots=True)
class DispatchEntry:
    """A queued run to place in its queue: ready now, or delayed until ``due_ms``."""

    run_id: uuid.UUID
    queue: str
    due_ms: int | None = None
    """Unix milliseconds when the run becomes due (database clock); None means now."""
    tenant: str = DEFAULT_TENANT

    @property
    def address(self) -> str:
        """The run's queue address (:func:`taskrt.records.address`)."""
        return address(self.tenant, self.queue)


@dataclass(slots=True)
class ClaimedRun:
    """A run a worker fetched and claimed, with everything needed to execute it."""

    run_id: uuid.UUID
    task_id: uuid.UUID
    attempt: int
    queue: str
    lease_token: str
    name: str
    payload: Any
    max_retries: int
    retry: str
    retry_params: dict[str, Any]
    timeout: float | None
    trace_id: str | None
    retry_count: int
    lost_runs: int
    enqueued_at: datetime
    available_at: datetime
    started_at: datetime | None = None
    cancel_requested: bool = False
    suspect: bool = False
    """The run before it was lost with a worker that held other runs: execute it alone."""
    tenant: str = DEFAULT_TENANT

    @property
    def address(self) -> str:
        """The run's queue address (:func:`taskrt.records.address`)."""
        return address(self.tenant, self.queue)


FinishStatus = Literal["succeeded", "failed", "cancelled"]


@dataclass(slots=True)
class RunFinish:
    """How a claimed run ended, ready to be written (fenced by its lease token).

    A failed run with ``retry_delay`` set is followed by run ``next_run_id`` after that many
    seconds; a failed run without it dead-letters its task.
    """

    run: ClaimedRun
    status: FinishStatus
    result: Any = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    reason: str | None = None
    retry_delay: float | None = None
    next_run_id: uuid.UUID | None = None
    start_delay: float = 0.0
    """Seconds the run waited in the worker's prefetch buffer between its claim (the recorded
    ``started_at``) and its handler starting; the store adds it to ``started_at``."""

    @property
    def dead_letters(self) -> bool:
        """True when this failure ends the task in the dead-letter queue."""
        return self.status == "failed" and self.retry_delay is None


@dataclass(slots=True)
class FinishReport:
    """What the store accepted from a batch of finishes."""

    won: list[RunFinish] = field(default_factory=list)
    fenced: list[RunFinish] = field(default_factory=list)
    """Finishes rejected because the run's lease was taken over (or it was handed back)."""
    retries: list[DispatchEntry] = field(default_factory=list)
    recovered: list[RunFinish] = field(default_factory=list)
    """Finishes (also in ``won``) that an earlier attempt of the same write had committed,
    though its reply was lost: the run was already finished with this outcome and this
    worker's lease token."""
    unclaimed: list[RunFinish] = field(default_factory=list)
    """Finishes (also in ``fenced``) whose run the store holds as ``queued`` again: a database
    crash undid the claim after the handler ran, so that attempt is recorded nowhere and the
    run must go back to its queue."""


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """Sizes of one queue, as cheap to read as the backend allows."""

    name: str
    ready: int
    delayed: int
    inflight: int
    dlq: int
    paused: bool
    tenant: str = DEFAULT_TENANT

    def to_dict(self, *, tenant: bool = False) -> dict[str, Any]:
        """JSON-ready form; ``tenant=True`` (the operator's listing across tenants) includes
        the tenant, a tenant-scoped listing leaves it out."""
        data: dict[str, Any] = {
            "name": self.name,
            "ready": self.ready,
            "delayed": self.delayed,
            "inflight": self.inflight,
            "dlq": self.dlq,
            "paused": self.paused,
        }
        if tenant:
            data["tenant"] = self.tenant
        return data


@dataclass(frozen=True, slots=True)
class WorkerIdentity:
    """What a backend needs to know about the worker fetching runs."""

    id: uuid.UUID
    lease_ttl: float


@dataclass(slots=True)
class RenewReport:
    """Result of renewing a worker's leases."""

    lost: list[uuid.UUID] = field(default_factory=list)
    """Runs whose lease is no longer this worker's: their outcome will be rejected."""
    cancel_requested: list[uuid.UUID] = field(default_factory=list)
    """Runs whose task somebody asked to cancel."""


@dataclass(frozen=True, slots=True)
class LostRun:
    """A run the reaper won: it ended ``lost``; what happens next."""

    run_id: uuid.UUID
    task_id: uuid.UUID
    task_name: str
    queue: str
    attempt: int
    next_run: DispatchEntry | None
    """The retry; None when the task was dead-lettered or had been asked to cancel."""
    outcome: str = "retry"
    """``retry``, ``dead_letter`` (poison budget spent) or ``cancelled``."""
    trace_id: str | None = None
    """The task's trace id, so the reaper's log line joins the task's other lines."""
    charged: bool = True
    """True when the run was executing alone, so its loss spent the task's poison budget;
    False when its worker held other runs too (the next run is suspect: it executes alone)."""
    tenant: str = DEFAULT_TENANT


@dataclass(slots=True)
class MaintenanceReport:
    """What one maintenance pass did (for logs and metrics)."""

    promoted: int = 0
    reaped_lost: int = 0
    requeued_unstarted: int = 0
    dropped: int = 0
    relayed: int = 0
    reconciled_missing: int = 0
    reconciled_stale: int = 0
    workers_offline: int = 0
    rebuilt: int = 0
    """1 when this pass found Redis had lost the queues and rebuilt them from the store."""
    leases_restored: int = 0
    """Leases of running runs written back to Redis by that rebuild."""
    lost: list[LostRun] = field(default_factory=list)
    """Runs that ended ``lost`` in this pass, for the on_retry / on_dead_letter hooks."""

    def any(self) -> bool:
        """True if the pass changed anything."""
        return any(getattr(self, name) for name in self.__dataclass_fields__)


@dataclass(frozen=True, slots=True)
class RunState:
    """What the store says about a run, for the reaper and the reconciler."""

    run_id: uuid.UUID
    task_id: uuid.UUID
    status: str
    queue: str
    attempt: int
    lease_token: str | None
    lease_expired: bool
    available_at: datetime
    tenant: str = DEFAULT_TENANT

    @property
    def address(self) -> str:
        """The run's queue address (:func:`taskrt.records.address`)."""
        return address(self.tenant, self.queue)
