"""Reaping expired Redis leases: each is settled by what the store says of its run.

Every worker's maintenance pass sees the same expired entries; the settle script moves each
one at most once (it releases a lease only while it still holds the value it was read with),
and the store fences the lost-run bookkeeping, so concurrent reapers are harmless.
"""

from __future__ import annotations

import uuid

from taskrt.ids import parse_uuid
from taskrt.queue.keyspace import QueueKeys
from taskrt.queue.redis_index import RedisIndex, Settle, SettleAction, settlements, text
from taskrt.records import MaintenanceReport, RunState

EXPIRED_PER_PASS = 500
"""Expired leases one pass reads per queue."""


def reap(index: RedisIndex, queue: str, k: QueueKeys, report: MaintenanceReport) -> None:
    """Settle the expired leases of queue address ``queue`` (every run settled here is of
    that address, its retry too): entries of unknown or finished runs are
    dropped, unstarted runs go back to the head of the queue, runs that were running are
    marked lost in the store (retried, dead-lettered or finished as the store decides)."""
    flat = index.scripts.expired(keys=[k.inflight, k.leases], args=[EXPIRED_PER_PASS])
    if not flat:
        return
    # keep the raw bytes: a garbage member must be released by exactly its own value
    expired = [(flat[i], flat[i + 1]) for i in range(0, len(flat), 2)]
    ids = {raw: parse_uuid(text(raw)) for raw, _ in expired}
    states = index.store.run_states([rid for rid in ids.values() if rid is not None])
    ops = settlements()
    unstarted = settlements()
    lost_candidates: list[RunState] = []
    value_of: dict[uuid.UUID, bytes] = {}
    for raw, value in expired:
        run_id = ids[raw]
        state = states.get(run_id) if run_id is not None else None
        if state is None or state.status not in ("queued", "running"):
            ops[queue].append(Settle(SettleAction.DROP, raw, value))
            report.dropped += 1
        elif state.status == "queued":
            unstarted[queue].append(Settle(SettleAction.UNSTARTED, raw, value))
        elif state.lease_expired:
            lost_candidates.append(state)
            value_of[state.run_id] = value
    # every worker's pass sees the same expired entries: count only those this pass moved
    report.requeued_unstarted += index.settle(unstarted)
    if not lost_candidates:
        index.settle(ops)
        return
    lost = index.store.mark_lost(lost_candidates, poison_budget=index.settings.poison_budget)
    left = index.left_ms([item.next_run for item in lost if item.next_run is not None])
    for item in lost:
        value = value_of[item.run_id]
        rid = str(item.run_id)
        if item.next_run is not None:
            ops[queue].append(
                Settle(
                    SettleAction.RETRY,
                    rid,
                    value,
                    target=str(item.next_run.run_id),
                    delay_ms=left.get(item.next_run.run_id, 0),
                )
            )
        elif item.outcome == "dead_letter":
            ops[queue].append(
                Settle(SettleAction.DEAD_LETTER, rid, value, target=str(item.task_id))
            )
        else:
            ops[queue].append(Settle(SettleAction.ACK, rid, value))
    report.reaped_lost += len(lost)
    report.lost.extend(lost)
    index.settle(ops)
    retried = [item.next_run.run_id for item in lost if item.next_run is not None]
    index.store.delete_outbox(retried)
