"""Reconciling Redis against the store (the truth), one queue address at a time.

Runs queued in the store but missing from Redis are dispatched again; Redis entries for unknown
or no-longer-queued runs are removed; the dead-letter list and the paused flag are made to match
the store. Only runs older than the outbox grace (plus a second) are considered missing, so a
dispatch still on its way is not doubled. One process at a time does this (a Redis lock).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta

from taskrt.ids import parse_uuid
from taskrt.queue.redis_index import RedisIndex, text
from taskrt.records import DispatchEntry, MaintenanceReport, split_address
from taskrt.store.tasks import dispatch_entry

log = logging.getLogger("taskrt.queue.reconcile")
PAGE = 10_000


def all_queues(index: RedisIndex) -> tuple[list[str], set[str]]:
    """Every queue address known to Redis or to the store, and the paused ones."""
    store = index.store
    paused = store.paused_queues()
    queues = set(index.known_queues()) | set(store.queued_queue_names()) | paused
    queues |= set(store.failed_queue_names())
    return sorted(queues), paused


def reconcile_all(index: RedisIndex, report: MaintenanceReport) -> None:
    """Reconcile every queue known to Redis or to the store."""
    queues, paused = all_queues(index)
    for queue in queues:
        reconcile_queue(index, queue, paused=queue in paused, report=report)


def reconcile_queue(
    index: RedisIndex,
    queue: str,
    *,
    paused: bool,
    report: MaintenanceReport,
    settled_before: datetime | None = None,
    full: bool = False,
) -> None:
    """Make Redis's view of queue address ``queue`` match the store's.

    Counts come first and are cheap (one pipeline, one query); the full passes, which read
    every entry of a list, run only when the counts show something is missing or stale, or
    when ``full`` (after Redis lost its data, counts prove nothing).

    Runs enqueued before ``settled_before`` (database clock; by default now less the outbox
    grace and a second) count as settled: their producer's dispatch is over.
    """
    store, client, k = index.store, index.redis, index.keys.queue(queue)
    if settled_before is None:
        # the database clock, read before Redis's counts: every run enqueued before this
        # minus the grace had its dispatch done before the counts were taken
        settled_before = store.clock() - timedelta(seconds=index.settings.outbox_grace + 1.0)
    pipe = client.pipeline(transaction=True)
    pipe.llen(k.ready)
    pipe.zcard(k.delayed)
    pipe.zcard(k.inflight)
    pipe.llen(k.dlq)
    pipe.exists(k.paused)
    ready, delayed, inflight, dlq, is_paused = pipe.execute()
    client.sadd(index.keys.queues, queue)
    if paused != bool(is_paused):
        if paused:
            client.set(k.paused, "1")
        else:
            index.wake(queue)
    counts = store.reconcile_counts(queue, settled_before)
    # runs a worker fetched but has not claimed yet are still queued in the store; they are
    # few (bounded by the workers' slots), so look them up rather than miscount
    fetched_unclaimed = 0
    if inflight:
        members: list[bytes] = client.zrange(k.inflight, 0, -1)  # type: ignore[assignment]
        leased = [rid for x in members if (rid := parse_uuid(text(x)))]
        fetched_unclaimed = sum(
            1 for state in store.run_states(leased).values() if state.status == "queued"
        )
    if full or counts.queued_settled > ready + delayed + fetched_unclaimed:
        _restore_missing(index, queue, settled_before, report)
    if ready + delayed > counts.queued:
        _remove_stale(index, queue, report)
    if full or counts.failed_settled > dlq or dlq > counts.failed:
        _rebuild_dead_letters(index, queue, settled_before, report)


def _restore_missing(
    index: RedisIndex, queue: str, settled_before: datetime, report: MaintenanceReport
) -> None:
    """Dispatch queued runs (older than ``settled_before``) that Redis does not hold."""
    store, client, k = index.store, index.redis, index.keys.queue(queue)
    tenant, name = split_address(queue)
    pipe = client.pipeline(transaction=True)
    pipe.lrange(k.ready, 0, -1)
    pipe.zrange(k.delayed, 0, -1)
    pipe.zrange(k.inflight, 0, -1)
    present = {text(x) for part in pipe.execute() for x in part}
    missing: list[DispatchEntry] = []
    after = None
    while True:
        rows = store.queued_runs(queue, enqueued_before=settled_before, after=after, limit=PAGE)
        missing.extend(
            replace(dispatch_entry(run_id, name, available_at, immediate=False), tenant=tenant)
            for run_id, available_at in rows
            if str(run_id) not in present
        )
        if len(rows) < PAGE:
            break
        after = rows[-1][0]
    if missing:
        log.warning(
            "queue %r: %d queued runs were missing from Redis; dispatched again",
            queue,
            len(missing),
        )
        index.place(missing)
        # dispatched: the relay must not dispatch them a second time
        store.delete_outbox([entry.run_id for entry in missing])
        report.reconciled_missing += len(missing)


def _remove_stale(index: RedisIndex, queue: str, report: MaintenanceReport) -> None:
    """Remove ready and delayed entries of unknown or no-longer-queued runs (and garbage)."""
    store, client, k = index.store, index.redis, index.keys.queue(queue)
    pipe = client.pipeline(transaction=True)
    pipe.lrange(k.ready, 0, -1)
    pipe.zrange(k.delayed, 0, -1)
    ready, delayed = pipe.execute()
    # entries stay raw bytes: garbage that is not UTF-8 is removed by exactly its own value
    listed: list[bytes] = [*ready, *delayed]
    stale: list[bytes] = []
    for start in range(0, len(listed), 1000):
        chunk = listed[start : start + 1000]
        id_of = {entry: parse_uuid(text(entry)) for entry in chunk}
        states = store.run_states([rid for rid in id_of.values() if rid is not None])
        for entry in chunk:
            rid = id_of[entry]
            state = states.get(rid) if rid is not None else None
            if state is None or state.status != "queued":
                stale.append(entry)
    if not stale:
        return
    pipe = client.pipeline(transaction=False)
    for entry in stale:
        pipe.lrem(k.ready, 0, entry)  # type: ignore[arg-type]  # redis-py sends bytes as is
        pipe.zrem(k.delayed, entry)
    replies = pipe.execute()
    removed = [entry for i, entry in enumerate(stale) if replies[2 * i] or replies[2 * i + 1]]
    if removed:  # entries fetched meanwhile were already gone: only report real removals
        log.warning(
            "queue %r: removed %d entries of unknown or finished runs: %s",
            queue,
            len(removed),
            ", ".join(repr(e[:80]) for e in removed[:20]) + (" ..." if len(removed) > 20 else ""),
        )
        report.reconciled_stale += len(removed)


def _rebuild_dead_letters(
    index: RedisIndex, queue: str, settled_before: datetime, report: MaintenanceReport
) -> None:
    """Make the dead-letter list hold exactly the queue's failed tasks."""
    store, client, k = index.store, index.redis, index.keys.queue(queue)
    in_list = {text(x) for x in client.lrange(k.dlq, 0, -1)}
    failed: set[str] = set()
    after = None
    while True:
        ids = store.failed_task_ids(queue, limit=PAGE, after=after, finished_before=settled_before)
        failed.update(str(t) for t in ids)
        if len(ids) < PAGE:
            break
        after = ids[-1]
    to_add = sorted(failed - in_list)
    if to_add:
        client.rpush(k.dlq, *to_add)
        report.reconciled_missing += len(to_add)
    recent_failures = {
        str(t) for t in store.failed_task_ids(queue, limit=PAGE, finished_after=settled_before)
    }
    to_remove = in_list - failed - recent_failures
    if to_remove:
        pipe = client.pipeline(transaction=False)
        for raw in to_remove:
            pipe.lrem(k.dlq, 0, raw)
        pipe.execute()
        report.reconciled_stale += len(to_remove)
