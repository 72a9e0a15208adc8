"""The worker process: ``taskrt worker --queues high,normal``.

Threads and their jobs:

- the calling thread fetches (worker/fetcher.py): waits for a free slot, leases and claims runs
  (priority order), and hands them to the event loop; when nothing is ready it waits for a
  wake-up message;
- the event-loop thread executes handlers (``async def`` on the loop, ``def`` on pool threads),
  enforcing timeouts and cancellation;
- the finisher thread writes outcomes in batches;
- the heartbeat thread renews leases, relays cancellations and touches the worker row;
- the maintenance thread promotes, reaps, relays the outbox and reconciles.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import FrameType

from taskrt import limits, logs, metrics
from taskrt._version import __version__
from taskrt.exceptions import ValidationError
from taskrt.handlers import check_queue_name
from taskrt.ids import uuid7
from taskrt.outcomes import OutcomeBuilder
from taskrt.prune import AutoPruner, Pruner
from taskrt.queue.base import QueueBackend
from taskrt.records import (
    ClaimedRun,
    FinishReport,
    RunFinish,
    WorkerIdentity,
    WorkerInfo,
    WorkerStatus,
)
from taskrt.runtime import Runtime
from taskrt.store import Store
from taskrt.worker.execution import ActiveRun, RunExecutor
from taskrt.worker.fairness import ALL_TENANTS, TenantRotation, describe
from taskrt.worker.fetcher import Fetcher, weighted_order
from taskrt.worker.finisher import Finisher
from taskrt.worker.foreign import ForeignRuns, log_unserved_task_types
from taskrt.worker.heartbeat import Heartbeat
from taskrt.worker.isolation import POLL_SECONDS, Isolation
from taskrt.worker.maintenance import Maintenance
from taskrt.worker.slots import SlotPool
from taskrt.worker.threads import HandlerThreads

log = logging.getLogger("taskrt.worker")

__all__ = ["Worker", "WorkerOptions", "parse_queues", "parse_tenants", "weighted_order"]

_TENANT_RE = re.compile(limits.TENANT_NAME_PATTERN)


def check_tenant_name(name: str, option: str = "--tenant") -> str:
    """Return ``name`` if it is a valid tenant name, else raise ValidationError."""
    if not _TENANT_RE.match(name):
        raise ValidationError(
            f"invalid tenant name {name!r} in {option}: use 1 to {limits.TENANT_NAME_MAX} "
            "lower-case letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name


def parse_tenants(text: str) -> tuple[list[str], dict[str, int] | None, bool]:
    """Parse ``--tenants``: ``a,b`` or ``a:3,b`` (weights overriding the tenants table's), or
    ``*`` (every tenant, including those created later).

    Returns the names in order, the weights given (None if none), and whether it was ``*``.
    """
    if text.strip() == ALL_TENANTS:
        return [], None, True
    names: list[str] = []
    weights: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, weight_text = part.partition(":")
        if name == ALL_TENANTS:
            raise ValidationError("--tenants '*' cannot be combined with tenant names")
        check_tenant_name(name, "--tenants")
        if name in names:
            raise ValidationError(f"tenant {name!r} is listed twice in --tenants")
        if sep:
            try:
                weight = int(weight_text)
            except ValueError:
                raise ValidationError(
                    f"weight of tenant {name!r} must be an integer, got {weight_text!r}"
                ) from None
            if not 1 <= weight <= limits.TENANT_WEIGHT_MAX:
                raise ValidationError(
                    f"weight of tenant {name!r} must be 1 to {limits.TENANT_WEIGHT_MAX}, "
                    f"got {weight}"
                )
            weights[name] = weight
        names.append(name)
    if not names:
        raise ValidationError("--tenants names no tenant")
    return names, (weights or None), False


def parse_queues(text: str) -> tuple[list[str], dict[str, int] | None]:
    """Parse ``--queues``: ``high,normal`` (strict priority) or ``high:5,normal:1`` (weighted).

    Returns the names in order and, if any weight was given, the weights (missing ones are 1).
    """
    names: list[str] = []
    weights: dict[str, int] = {}
    weighted = False
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, weight_text = part.partition(":")
        check_queue_name(name)
        if name in names:
            raise ValidationError(f"queue {name!r} is listed twice in --queues")
        weight = 1
        if sep:
            weighted = True
            try:
                weight = int(weight_text)
            except ValueError:
                raise ValidationError(
                    f"weight of queue {name!r} must be an integer, got {weight_text!r}"
                ) from None
            if weight < 1:
                raise ValidationError(f"weight of queue {name!r} must be >= 1, got {weight}")
        names.append(name)
        weights[name] = weight
    if not names:
        raise ValidationError("--queues names no queue")
    return names, (weights if weighted else None)


@dataclass
class WorkerOptions:
    """How a worker runs; unset values come from settings."""

    queues: list[str] = field(default_factory=lambda: ["default"])
    weights: dict[str, int] | None = None
    concurrency: int = 8
    name: str | None = None
    lease_ttl: float = 30.0
    shutdown_grace: float = 30.0
    prefetch: int | None = None
    """Claimed runs that may wait for a slot; None: as many as ``concurrency``."""
    maintenance: bool = True
    tenants: list[str] = field(default_factory=lambda: ["default"])
    """The tenants served (ignored when ``all_tenants``); several are served fairly."""
    all_tenants: bool = False
    """Serve every tenant, including tenants created while the worker runs (``'*'``)."""
    tenant_weights: dict[str, int] | None = None
    """Weights overriding the tenants table's (``--tenants a:3,b``)."""

    @property
    def tenant(self) -> str:
        """The tenant served, or ``*`` when several (or all) are."""
        if self.all_tenants or len(self.tenants) != 1:
            return ALL_TENANTS
        return self.tenants[0]


class Worker:
    """One worker process's machinery; :meth:`run` blocks until shutdown."""

    def __init__(
        self, runtime: Runtime, store: Store, backend: QueueBackend, options: WorkerOptions
    ) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.store = store
        self.backend = backend
        self.options = options
        self.id = uuid7()
        self.identity = WorkerIdentity(id=self.id, lease_ttl=options.lease_ttl)
        self.info = WorkerInfo(
            id=self.id,
            name=options.name or f"{socket.gethostname()}-{os.getpid()}",
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=tuple(options.queues),
            concurrency=options.concurrency,
            version=__version__,
            tenant=options.tenant,
            tenants=(
                tuple(options.tenants)
                if not options.all_tenants and len(options.tenants) > 1
                else None
            ),
        )
        self.rotation = TenantRotation(
            None if options.all_tenants else options.tenants,
            weights=options.tenant_weights,
            load=store.list_tenants,
        )
        prefetch = options.concurrency if options.prefetch is None else options.prefetch
        self.slots: SlotPool[ActiveRun] = SlotPool(options.concurrency, prefetch)
        self.threads = HandlerThreads()
        self._claimers = HandlerThreads(name="taskrt-claimer")
        self._held: dict[uuid.UUID, ActiveRun] = {}
        self._held_lock = threading.Lock()
        self._stopping = threading.Event()
        self._signals = 0
        self._status = WorkerStatus.ONLINE
        self.loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._run_loop, name="taskrt-loop", daemon=True)
        self.outcomes = OutcomeBuilder(
            runtime.registry,
            traceback_limit=self.settings.traceback_limit,
            max_retry_delay=self.settings.max_retry_delay,
            max_json_depth=self.settings.max_json_depth,
        )
        self.finisher = Finisher(backend, self.identity, self._written, runtime.observers)
        self.isolation = Isolation(self.id)  # suspect runs execute alone
        self.fetcher = Fetcher(
            backend=backend,
            identity=self.identity,
            queues=options.queues,
            weights=options.weights,
            batch=self.settings.fetch_batch,
            slots=self.slots,
            isolation=self.isolation,
            claimers=self._claimers,
            stopping=self._stopping,
            admit=self._admit,
            take=self._take,
            arrive=self._arrive,
            advance_isolation=self._advance_isolation,
            rotation=self.rotation,
        )
        # runs of task types not installed here go back untouched before they get a slot
        self._foreign = ForeignRuns(
            runtime.registry, backend, self.identity, delay=self.settings.unknown_task_delay
        )
        self.executor = RunExecutor(
            registry=runtime.registry,
            observers=runtime.observers,
            outcomes=self.outcomes,
            threads=self.threads,
            loop=self.loop,
            worker_id=self.id,
            on_finish=self._finished,
            on_done=self._run_done,
            timeout_grace=self.settings.timeout_grace,
            loop_stall_after=self.settings.loop_stall_after,
            worker_name=self.info.name,
        )
        self.heartbeat = Heartbeat(
            backend=backend,
            store=store,
            identity=self.identity,
            heartbeat_interval=self.settings.heartbeat_interval,
            held=self._held_runs,
            status=lambda: self._status,
            loop=self.loop,
        )
        self.maintenance = Maintenance(
            backend,
            runtime.observers,
            interval=self.settings.maintenance_interval,
            reconcile_interval=self.settings.reconcile_interval,
        )
        self.pruner = AutoPruner(
            Pruner(store, self.settings),
            interval=self.settings.retention_interval,
            duty=self.settings.retention_duty,
        )

    # --- bookkeeping ----------------------------------------------------------------------
    def _held_runs(self) -> list[ActiveRun]:
        with self._held_lock:
            return list(self._held.values())

    def _finished(self, active: ActiveRun, finish: RunFinish) -> None:
        self.finisher.submit(active, finish)

    def _run_done(self, active: ActiveRun) -> None:
        if active.handed_back or active.lease_lost:
            with self._held_lock:
                self._held.pop(active.run.run_id, None)
        following = self.slots.done()
        if following is not None:
            self._start(following)

    def _written(self, actives: list[ActiveRun], report: FinishReport) -> None:
        with self._held_lock:
            for active in actives:
                self._held.pop(active.run.run_id, None)
        for recovered in report.recovered:
            log.info(
                "run %s: outcome %r was already written (the earlier reply was lost)",
                recovered.run.run_id,
                recovered.status,
                extra=logs.run_fields(recovered.run, self.id),
            )
        unclaimed = {f.run.run_id for f in report.unclaimed}
        for undone in report.unclaimed:
            log.error(
                "run %s: outcome %r refused: the database no longer records this worker's "
                "claim (a database crash undid it after the handler ran), so attempt %d ran "
                "but is recorded nowhere; the run is queued again and back in its queue, and "
                "its handler will run again under the same attempt",
                undone.run.run_id,
                undone.status,
                undone.run.attempt,
                extra=logs.run_fields(undone.run, self.id),
            )
        metrics.claims_undone((f.run.tenant, f.run.queue, f.run.name) for f in report.unclaimed)
        for fenced in (f for f in report.fenced if f.run.run_id not in unclaimed):
            log.warning(
                "run %s: outcome %r rejected: the lease was taken over (late completion)",
                fenced.run.run_id,
                fenced.status,
                extra=logs.run_fields(fenced.run, self.id),
            )
        # the written outcomes are counted, logged and told to plugins by the finisher's
        # "runs finished" event (taskrt.events)

    # --- threads --------------------------------------------------------------------------
    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _admit(self, runs: list[ClaimedRun], leased_at: float) -> list[ActiveRun]:
        """Fetched runs this worker can run (the others go back untouched), as active runs."""
        return [
            ActiveRun(run=run, leased_monotonic=leased_at) for run in self._foreign.keep_known(runs)
        ]

    def _hold(self, actives: list[ActiveRun]) -> None:
        with self._held_lock:
            for active in actives:
                self._held[active.run.run_id] = active

    def _take(self, actives: list[ActiveRun]) -> None:
        """Runs of a one-call fetch: start those that get a slot, buffer the rest."""
        self._hold(actives)
        for active in self.slots.offer(self.isolation.park(actives)):
            self._start(active)

    def _arrive(self, reserved: int, actives: list[ActiveRun]) -> None:
        """Runs of a claim for which ``reserved`` slots were held (in lease order)."""
        self._hold(actives)
        for active in self.slots.arrive(reserved, self.isolation.park(actives)):
            self._start(active)

    def _start(self, active: ActiveRun) -> None:
        """Start a run that got a slot, unless this worker can no longer vouch for its lease
        (it was frozen, or the store was away, for longer than the lease TTL): another worker
        may have it by now, so it is given up (handed back, if it is still ours) unstarted."""
        if not active.lease_lost and not self.heartbeat.vouches(active) and active.hand_back():
            log.warning(
                "run %s: not started: its lease was taken or last renewed more than the lease "
                "TTL (%.1f s) ago (the worker was paused or the store away); giving it up",
                active.run.run_id,
                self.identity.lease_ttl,
                extra=logs.run_fields(active.run, self.id),
            )
            metrics.runs_handed_back(
                [(active.run.tenant, active.run.queue, active.run.name)], "lease_unvouched"
            )
            # fenced on the lease token: back to its queue if no one took it meanwhile
            self._claimers.run(self._hand_back, [active], "unvouched")
        self.executor.start(active)  # a run handed back or lost settles without running

    def _hand_back(self, actives: list[ActiveRun], what: str) -> None:
        if not actives:
            return
        log.warning("handing back %d %s run(s) without spending an attempt", len(actives), what)
        try:
            handed = self.backend.hand_back([a.run for a in actives], self.identity)
            log.info("handed back %d run(s)", handed)
        except Exception as exc:  # leases expire and the reaper takes over
            log.error("hand back failed (%s); the runs' leases will expire instead", exc)
        with self._held_lock:
            for active in actives:
                self._held.pop(active.run.run_id, None)

    # --- lifecycle ------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop fetching and start draining (what SIGTERM does)."""
        if not self._stopping.is_set():
            log.info(
                "worker %s: stopping; draining for up to %.1f s",
                self.info.name,
                self.options.shutdown_grace,
            )
            self._status = WorkerStatus.DRAINING
            self._stopping.set()
            self.slots.wake()
            self.backend.interrupt_wait()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals >= 2:
            log.warning("second signal: exiting now; leases cover the runs still held")
            os._exit(1)
        self.request_stop()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT drain; a second one exits at once."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def run(self) -> int:
        """Register, work until asked to stop, drain, hand back, deregister. Returns 0."""
        self.info = self.store.register_worker(self.info)
        self._loop_thread.start()
        self.finisher.start()
        self.heartbeat.start()
        self.executor.start_watchdog()
        if self.options.maintenance:
            self.maintenance.start()
            self.pruner.start()
        self.runtime.observers.notify("worker_startup", worker=self.info)
        log.info(
            "worker %s (%s) started: queues %s, concurrency %d, backend %s%s",
            self.info.name,
            self.id,
            ",".join(self.options.queues),
            self.options.concurrency,
            self.backend.name,
            ""
            if self.options.tenants == ["default"] and not self.options.all_tenants
            else f", tenants {describe(self.rotation)}",
        )
        log_unserved_task_types(
            self.runtime.registry, self.options.queues, self.settings.default_queue
        )
        try:
            self.fetcher.run()
        finally:
            self._shutdown()
        return 0

    # --- suspect runs (worker/isolation.py) --------------------------------------------------
    def _advance_isolation(self) -> None:
        busy = self.fetcher.sequencer.in_flight > 0 or self.slots.busy > 0
        with self._held_lock:
            held = set(self._held)
        self.isolation.advance(held, busy, self._start_alone)
        self._stopping.wait(POLL_SECONDS)

    def _start_alone(self, active: ActiveRun) -> bool | None:
        try:
            mine = self.store.mark_isolated(active.run)
        except Exception as exc:  # the store is away: try again on the next pass
            log.warning("could not record suspect run %s as isolated: %s", active.run.run_id, exc)
            return None
        if not mine:  # its lease lapsed meanwhile: another worker has it now
            with self._held_lock:
                self._held.pop(active.run.run_id, None)
            log.warning("suspect run %s is no longer this worker's; not started", active.run.run_id)
            return False
        log.info(
            "run %s starts alone (suspect)",
            active.run.run_id,
            extra=logs.run_fields(active.run, self.id),
        )
        for ready in self.slots.offer([active]):
            self._start(ready)
        return True

    def _shutdown(self) -> None:
        self._status = WorkerStatus.DRAINING
        grace_end = time.monotonic() + self.options.shutdown_grace
        self.fetcher.sequencer.wait_idle(
            max(grace_end - time.monotonic(), 1.0)
        )  # claims on their way
        # prefetched runs never started: hand them back at once
        self._hand_back([a for a in self.slots.take_buffer() if a.hand_back()], "prefetched")
        self.slots.wait_idle(max(grace_end - time.monotonic(), 0.0))
        # a run past its timeout has had its chance: it spends the attempt, never handed back
        self.executor.fail_overdue()
        unfinished = [a for a in self._held_runs() if a.hand_back()]
        self._hand_back(unfinished, "unfinished")
        for active in unfinished:
            if active.handler_task is not None:
                self.loop.call_soon_threadsafe(active.handler_task.cancel)
        self.finisher.wait_flushed(10.0)
        self.finisher.stop()
        self.heartbeat.stop()
        self.executor.stop_watchdog()
        self.maintenance.stop()
        self.pruner.stop()
        self.runtime.observers.notify("worker_shutdown", worker=self.info)
        try:
            self.store.worker_stopped(self.id)
        except Exception as exc:  # the maintenance loop of others will mark us offline
            log.warning("could not mark the worker offline: %s", exc)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._loop_thread.join(2)
        self.threads.shutdown()
        log.info("worker %s stopped", self.info.name)
