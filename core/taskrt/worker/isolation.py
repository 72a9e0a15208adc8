"""Suspect runs execute alone (docs/concepts/lifecycle.md, "A task that kills its worker").

When a worker dies holding several runs, the reaper cannot tell which of them killed it, so it
charges none of them to the poison budget and marks each one's next run ``suspect``. A worker
that claims a suspect run parks it here: it stops fetching, lets every other run it holds end
and its outcome be written, records in the store that the suspect starts alone
(``task_runs.isolated_at``), runs it, and fetches again only once the suspect's outcome is
written. Parked runs stay among the runs the worker holds, so their leases are renewed and a
shutdown hands them back like any other. If the suspect kills this worker, it was the only run
the worker held, so the reaper charges it, and only it, to the poison budget; an innocent
suspect just succeeds.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from collections.abc import Callable, Collection

from taskrt import logs
from taskrt.worker.execution import ActiveRun

log = logging.getLogger("taskrt.worker")

POLL_SECONDS = 0.02
"""How often a worker holding a suspect run looks whether it may start it."""


class Isolation:
    """Suspect runs parked until their worker holds nothing else, then started one by one."""

    def __init__(self, worker_id: uuid.UUID) -> None:
        self.worker_id = worker_id
        self._parked: deque[ActiveRun] = deque()
        self._current: ActiveRun | None = None
        self._lock = threading.Lock()

    @property
    def engaged(self) -> bool:
        """True while a suspect run is parked or running: the worker must fetch nothing."""
        return self._current is not None or bool(self._parked)

    def park(self, actives: list[ActiveRun]) -> list[ActiveRun]:
        """Keep the suspect runs of ``actives`` back; return the others, to start as usual."""
        if not any(active.run.suspect for active in actives):
            return actives  # the usual case: one pass, nothing else
        with self._lock:
            for active in actives:
                if active.run.suspect:
                    self._parked.append(active)
                    log.info(
                        "run %s is suspect (its previous run was lost with a worker that held "
                        "other runs): it will run alone",
                        active.run.run_id,
                        extra=logs.run_fields(active.run, self.worker_id),
                    )
        return [active for active in actives if not active.run.suspect]

    def advance(
        self,
        held: Collection[uuid.UUID],
        busy: bool,
        start_alone: Callable[[ActiveRun], bool | None],
    ) -> None:
        """Start the next parked suspect once this worker holds nothing but parked runs
        (``held``: the runs it holds; ``busy``: a claim or a slot still in use).

        ``start_alone`` records the isolation in the store and starts the run: True if it
        started, False if the run is no longer this worker's (dropped), None if the store
        could not be reached (tried again on the next call).
        """
        with self._lock:
            current = self._current
            if current is not None:
                if current.run.run_id in held:
                    return  # still running, or its outcome not written yet
                self._current = current = None
            if not self._parked or busy:
                return
            parked = {active.run.run_id for active in self._parked}
            if any(run_id not in parked for run_id in held):
                return  # other runs are still running or being written
            candidate = self._parked.popleft()
        started = start_alone(candidate)
        with self._lock:
            if started is None:
                self._parked.appendleft(candidate)
            elif started:
                self._current = candidate
