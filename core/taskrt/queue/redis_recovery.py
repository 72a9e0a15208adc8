"""Noticing at once that Redis lost the queues, and rebuilding them from the store.

Redis may lose what taskrt put there: a flush, a restart without persistence, a restart that
reloads an older snapshot, a failover to a replica that lagged. The periodic reconcile would
heal all of these, but only at its next pass (a minute by default). Instead every maintenance
pass (each second, in every worker) reads one marker key and the server's ``run_id``:

- the marker holds the run id of the server the queues were last rebuilt on;
- a missing marker (a flush, an empty restart) or one holding another run id (any restart or
  failover, even one that kept some data) means the queues may have lost entries.

Then one process (a short lock) rebuilds: every queue is reconciled in full against the store
(queued runs back to ready, delayed runs back to delayed, the dead-letter lists and pause flags
as the store has them) and the leases of running runs are written back, so the reaper sees
them again should their worker be gone; the workers still holding them keep renewing them.
Nothing already in Redis is touched, so a rebuild is idempotent and harmless when repeated.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

import redis

from taskrt import metrics
from taskrt.queue.redis_index import CHUNK, RedisIndex, lease_value
from taskrt.queue.redis_reconcile import all_queues, reconcile_queue
from taskrt.records import MaintenanceReport

log = logging.getLogger("taskrt.queue.recovery")

LOCK_TTL_MS = 30_000
"""How long a rebuild may go without extending its lock (it extends it after each queue)."""


def _text(value: bytes | str | None) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


class IndexGuard:
    """Checks the marker and the server's run id; rebuilds the queues when either says so."""

    def __init__(self, index: RedisIndex) -> None:
        self.index = index

    def server_run_id(self) -> str:
        """The Redis server's ``run_id``: a new one each time the server starts."""
        try:
            return str(self.index.redis.info("server").get("run_id", ""))
        except redis.ResponseError:
            return ""

    def loss(self) -> tuple[str, str] | None:
        """(reason, run id) if the queues may have lost entries, else None. The reason is
        ``missing`` (no marker) or ``restarted`` (a marker from another server run)."""
        pipe = self.index.redis.pipeline(transaction=False)
        pipe.get(self.index.keys.index_marker)
        pipe.info("server")
        marker, info = pipe.execute(raise_on_error=False)
        if isinstance(marker, Exception):
            raise marker
        # a server that refuses INFO (some managed services rename it) still has the marker
        run_id = "" if isinstance(info, Exception) else str(info.get("run_id", ""))
        marker_text = _text(marker)
        if marker_text == run_id:
            return None
        return ("missing" if marker_text is None else "restarted"), run_id

    def check(self, report: MaintenanceReport) -> bool:
        """Rebuild the queues if Redis lost them; True if this call rebuilt them."""
        found = self.loss()
        if found is None:
            return False
        reason, run_id = found
        index = self.index
        index.forget_registered_queues()
        client, keys = index.redis, index.keys
        lock = keys.lock("rebuild")
        if not client.set(lock, index.instance, nx=True, px=LOCK_TTL_MS):
            return False  # another process is rebuilding
        try:
            if _text(client.get(keys.index_marker)) == run_id:
                return False  # rebuilt meanwhile by a process that has just let go
            # provisional: should this process die half way, the marker expires and the next
            # check rebuilds again
            client.set(keys.index_marker, run_id, px=LOCK_TTL_MS)
            started = time.monotonic()
            try:
                rebuild(index, report, keep_alive=self._keep_alive)
            except Exception:
                # the store or Redis failed half way: let the next pass start over at once
                with contextlib.suppress(redis.RedisError):
                    client.delete(keys.index_marker)
                raise
            # for good, but only if still there: Redis losing its data again during the
            # rebuild must leave the marker missing, so that the next check rebuilds again
            client.set(keys.index_marker, run_id, xx=True)
        finally:
            index.scripts.unlock(keys=[lock], args=[index.instance])
        report.rebuilt = 1
        metrics.redis_rebuilt(reason)
        level = (
            logging.WARNING if report.reconciled_missing or report.leases_restored else logging.INFO
        )
        log.log(
            level,
            "Redis %s (server run id %s): rebuilt the queues from the database in %.2f s: "
            "%d entries restored, %d leases of running runs written back",
            "held no queue marker (first start, a flush or an empty restart)"
            if reason == "missing"
            else "restarted or failed over",
            run_id,
            time.monotonic() - started,
            report.reconciled_missing,
            report.leases_restored,
        )
        return True

    def _keep_alive(self) -> None:
        keys = self.index.keys
        pipe = self.index.redis.pipeline(transaction=False)
        pipe.pexpire(keys.lock("rebuild"), LOCK_TTL_MS)
        pipe.pexpire(keys.index_marker, LOCK_TTL_MS)
        pipe.execute()


def rebuild(
    index: RedisIndex,
    report: MaintenanceReport,
    *,
    keep_alive: Callable[[], None] | None = None,
) -> None:
    """Reconcile every queue in full against the store and write back the leases of running
    runs. Every run committed before the rebuild started counts: Redis holds none of them."""
    store = index.store
    settled_before = store.clock()
    queues, paused = all_queues(index)
    for queue in queues:
        reconcile_queue(
            index,
            queue,
            paused=queue in paused,
            report=report,
            settled_before=settled_before,
            full=True,
        )
        report.leases_restored += restore_leases(index, queue)
        if keep_alive is not None:
            keep_alive()


def restore_leases(index: RedisIndex, queue: str) -> int:
    """Write back the leases of ``queue``'s running runs that Redis no longer holds, each
    for the time it has left by the database clock; returns how many were written."""
    held = index.store.held_leases(queue)
    k = index.keys.queue(queue)
    written = 0
    for start in range(0, len(held), CHUNK):
        args: list[str | int] = []
        for lease in held[start : start + CHUNK]:
            args.extend(
                (
                    str(lease.run_id),
                    lease_value(lease.worker_id, lease.lease_token),
                    lease.remaining_ms,
                )
            )
        written += int(index.scripts.adopt(keys=[k.inflight, k.leases], args=args))
    return written
