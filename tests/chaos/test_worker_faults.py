"""Worker faults: a worker frozen (SIGSTOP) for longer than its lease TTL, and a task that
kills its worker among innocent tasks. Issue 12, defects 15 and 12.

What a handler may see twice here is only what the fault cut short: the run a frozen worker was
executing (another worker took it over), the runs a killed worker was executing. A run a worker
had only prefetched, or that was still queued, must run once.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.chaos.harness import Chaos
from tests.support.procs import WorkerProcess, wait_for

pytestmark = pytest.mark.services


def _runs(chaos: Chaos, task: uuid.UUID) -> list[tuple[int, str, uuid.UUID | None]]:
    return [
        (row[0], row[1], row[2])
        for row in chaos.rows(
            "SELECT attempt, status, worker_id FROM task_runs WHERE task_id = %s ORDER BY attempt",
            task,
        )
    ]


def test_a_worker_frozen_past_its_lease_ttl_does_not_start_the_runs_it_lost(
    chaos: Chaos,
) -> None:
    settings = {"lease_ttl": 1, "heartbeat_interval": 0.3, "maintenance_interval": 0.2}
    # one slot, one run prefetched behind it
    frozen = chaos.spawn("frozen", "-c", "1", worker_prefetch=1, **settings)
    frozen_id = chaos.wait_registered(frozen)
    executing, prefetched = chaos.enqueue_records(2, ms=2500)
    wait_for(
        lambda: [r[1:] for r in _runs(chaos, prefetched)] == [("running", frozen_id)],
        30,
        message="the second run claimed (prefetched) by the frozen worker",
    )
    assert [e.task_id for e in chaos.executions()] == [executing]

    frozen.signal(signal.SIGSTOP)
    try:
        chaos.spawn("other", "-c", "2", **settings)
        # the other worker reaps both runs and executes both tasks
        wait_for(
            lambda: (
                {e.task_id for e in chaos.executions() if e.pid != frozen.pid}
                == {executing, prefetched}
            ),
            30,
            message="both tasks re-run by the other worker",
        )
        # thaw only once the frozen handler's time is up: its slot frees the moment it runs
        time.sleep(max(0.0, chaos.executions()[0].at + 3.0 - time.time()))
    finally:
        frozen.signal(signal.SIGCONT)
    # the thawed worker's handler ends (its late outcome is refused) and its slot frees: the
    # prefetched run it no longer holds must not start now
    states = chaos.wait_final([executing, prefetched], timeout=30)
    assert set(states.values()) == {"completed"}, states
    time.sleep(3.0)  # time enough for the thawed worker to start what it had prefetched
    by_task = chaos.executions_by_task()
    started_by_thawed = [e for e in by_task[prefetched] if e.pid == frozen.pid]
    assert not started_by_thawed, f"the thawed worker started a run it had lost: {by_task}"
    assert len(by_task[prefetched]) == 1, by_task[prefetched]
    # the run that was executing when the worker froze ran twice: that was unavoidable
    assert by_task[executing][0].pid == frozen.pid
    assert chaos.succeeded_runs([executing, prefetched]) == {1: 2}
    assert frozen.proc is not None
    assert frozen.proc.poll() is None


@contextmanager
def _supervised(workers: list[WorkerProcess]) -> Iterator[set[int]]:
    """Restart any of ``workers`` that exits, as supervisord would; yields the dead pids."""
    stop = threading.Event()
    dead: set[int] = set()

    def loop() -> None:
        while not stop.wait(0.05):
            for worker in workers:
                if worker.proc is not None and worker.proc.poll() is not None:
                    dead.add(worker.pid)
                    worker.start()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield dead
    finally:
        stop.set()
        thread.join(5)


def test_a_poison_task_among_innocents_takes_no_innocent_down(chaos: Chaos) -> None:
    settings = {"lease_ttl": 1, "heartbeat_interval": 0.3, "maintenance_interval": 0.2}
    workers = [chaos.spawn(f"w{n}", "-c", "4", **settings) for n in range(2)]
    with _supervised(workers) as dead:
        innocents = chaos.enqueue_records(4, ms=1500)
        (poison,) = chaos.client.enqueue_many([chaos.record_spec(crash=True)])
        innocents += chaos.enqueue_records(8, ms=1500)
        states = chaos.wait_final([*innocents, poison.id], timeout=90)
    assert states[poison.id] == "failed"
    assert {states[task] for task in innocents} == {"completed"}, states
    assert chaos.succeeded_runs(innocents) == {1: len(innocents)}
    reason = chaos.scalar("SELECT failure_reason FROM tasks WHERE id = %s", poison.id)
    assert reason == "lost"
    lost_innocents = chaos.scalar(
        "SELECT coalesce(sum(lost_runs), 0) FROM tasks WHERE id = ANY(%s)", innocents
    )
    assert lost_innocents == 0, "an innocent task was charged for the poison's deaths"
    # an innocent ran again only if a worker died under it
    by_task = chaos.executions_by_task()
    for task in innocents:
        runs = by_task[task]
        assert all(e.pid in dead for e in runs[:-1]), (task, runs, dead)
    assert dead, "the poison task killed no worker: the test proves nothing"
