"""Pure parts of the worker's fault handling (no services): the fetch backoff while claims
fail, and which leases a worker can still vouch for after a pause (issue 12, defects 10, 15)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, cast

from taskrt.records import ClaimedRun, RenewReport, WorkerIdentity, WorkerStatus
from taskrt.worker.execution import ActiveRun
from taskrt.worker.heartbeat import Heartbeat
from taskrt.worker.pipeline import BACKOFF_MOST, Backoff
from tests.support.runs import claimed_run


def _run() -> ClaimedRun:
    return claimed_run(payload={}, max_retries=0, retry="exponential", started=False)


def test_the_fetch_backoff_doubles_up_to_its_cap_and_resets_on_success() -> None:
    backoff = Backoff(first=0.05, most=BACKOFF_MOST)
    pauses = [backoff.failed() for _ in range(8)]
    assert pauses[:5] == [0.05, 0.1, 0.2, 0.4, 0.8]
    assert max(pauses) == BACKOFF_MOST <= 1.0  # work flows again within a second of recovery
    assert backoff.failing
    assert backoff.succeeded() is True
    assert backoff.succeeded() is False  # only the first success after failures says so
    assert backoff.failed() == 0.05
    backoff.succeeded()
    began = time.monotonic()
    backoff.wait(threading.Event())  # nothing failing: no pause
    assert time.monotonic() - began < 0.05


class _Renewing:
    """A queue backend whose renewals succeed (or raise ``error``)."""

    error: Exception | None = None
    keeps_index = False  # leases in the store alone

    def renew(self, runs: Sequence[ClaimedRun], worker: WorkerIdentity) -> RenewReport:
        if self.error is not None:
            raise self.error
        return RenewReport()


def _heartbeat(backend: _Renewing, held: list[ActiveRun], ttl: float = 30.0) -> Heartbeat:
    return Heartbeat(
        backend=cast(Any, backend),
        store=cast(Any, None),
        identity=WorkerIdentity(id=uuid.uuid4(), lease_ttl=ttl),
        heartbeat_interval=1.0,
        held=lambda: held,
        status=lambda: WorkerStatus.ONLINE,
        loop=asyncio.new_event_loop(),
    )


def test_a_lease_taken_or_renewed_within_the_ttl_is_vouched_for_and_an_older_one_is_not() -> None:
    now = time.monotonic()
    fresh = ActiveRun(run=_run(), leased_monotonic=now - 1)
    stale = ActiveRun(run=_run(), leased_monotonic=now - 31)  # e.g. the worker was frozen
    beat = _heartbeat(_Renewing(), [fresh, stale])
    assert beat.vouches(fresh, now)
    assert not beat.vouches(stale, now)

    beat._renew(now)  # a successful renewal in the store covers every held run
    assert beat.vouches(stale, now + 29)
    assert not beat.vouches(stale, now + 30.5)  # ...for one TTL, by the worker's own clock


def test_failed_renewals_give_up_only_the_leases_that_are_past_the_ttl() -> None:
    now = time.monotonic()
    recent = ActiveRun(run=_run(), leased_monotonic=now - 1)
    old = ActiveRun(run=_run(), leased_monotonic=now - 31)
    backend = _Renewing()
    backend.error = ConnectionError("the store is away")
    beat = _heartbeat(backend, [recent, old])
    beat._renew(now)
    assert old.lease_lost
    assert not recent.lease_lost  # claimed a second ago: its lease still runs
