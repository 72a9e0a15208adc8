"""Runs of task types this worker does not have, as in a fleet halfway through a rolling deploy.

A queue entry names a run only, so a worker learns a run's task type when it claims the run.
If the type is not installed here, the run is *handed back untouched* before it gets a slot:
the claim is undone (the run is ``queued`` again, same run, same attempt, no error recorded)
and the run becomes due again after ``TASKRT_UNKNOWN_TASK_DELAY`` seconds, so this worker does
not spin on it and the workers that have the type take it. Nothing is spent: not an attempt,
not the poison budget. Each type handed back is logged at most once a minute (with how many
lines were suppressed since the last one) and counted in ``taskrt_runs_handed_back_total``.

At start a worker also says, in one line, which of its installed task types default to
queues it does not serve: tasks of those types enqueued without a queue never reach it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence

from taskrt import logs, metrics
from taskrt.plugins import Registry
from taskrt.queue.base import QueueBackend
from taskrt.records import ClaimedRun, WorkerIdentity

log = logging.getLogger("taskrt.worker")

_handed_back_log = logs.RateLimitedLog(60.0)
"""At most one line a minute per unknown task type."""


class ForeignRuns:
    """Splits claimed runs into those this worker can execute and those it hands back."""

    def __init__(
        self,
        registry: Registry,
        backend: QueueBackend,
        identity: WorkerIdentity,
        *,
        delay: float,
    ) -> None:
        self.registry = registry
        self.backend = backend
        self.identity = identity
        self.delay = delay

    def keep_known(self, runs: list[ClaimedRun]) -> list[ClaimedRun]:
        """Return the runs whose task type is installed here; hand the others back untouched
        (a failed hand-back is logged: the runs' leases expire and the reaper requeues them)."""
        known = self.registry.task_types
        foreign = [run for run in runs if run.name not in known]
        if not foreign:
            return runs
        try:
            handed = self.backend.hand_back(foreign, self.identity, delay=self.delay)
        except Exception as exc:  # the store or Redis is away; the leases cover the runs
            log.error(
                "could not hand back %d run(s) of task types this worker lacks (%s); their "
                "leases will expire instead",
                len(foreign),
                exc,
            )
            handed = 0
        if handed:
            metrics.runs_handed_back(((r.tenant, r.queue, r.name) for r in foreign), "unknown_task")
        self._log(foreign)
        return [run for run in runs if run.name in known]

    def _log(self, foreign: Sequence[ClaimedRun]) -> None:
        for name in sorted({run.name for run in foreign}):
            runs = [run for run in foreign if run.name == name]
            _handed_back_log.log(
                log,
                logging.WARNING,
                name,
                "handed back %d run(s) of task type %r (queue %r) untouched, no attempt spent: "
                "it is not installed on this worker; workers that have it will run them",
                len(runs),
                name,
                runs[0].queue,
            )


def unserved_task_types(
    registry: Registry, queues: Sequence[str], default_queue: str
) -> dict[str, list[str]]:
    """Installed task types whose default queue is not among ``queues``, by that queue."""
    unserved: dict[str, list[str]] = defaultdict(list)
    for name, task_type in sorted(registry.task_types.items()):
        queue = task_type.queue or default_queue
        if queue not in queues:
            unserved[queue].append(name)
    return dict(unserved)


def log_unserved_task_types(registry: Registry, queues: Sequence[str], default_queue: str) -> None:
    """Say in one line which installed task types default to queues this worker does not
    serve (nothing if there are none)."""
    unserved = unserved_task_types(registry, queues, default_queue)
    if not unserved:
        return
    listed = "; ".join(f"{queue}: {', '.join(names)}" for queue, names in sorted(unserved.items()))
    log.info(
        "installed task types whose default queue this worker does not serve (it serves %s): "
        "%s; tasks of these types enqueued without a queue go to other workers",
        ",".join(queues),
        listed,
    )
