"""The store's business rules, written once for both databases."""

from __future__ import annotations

from taskrt.records import RunFinish

LOST_ALONE = (
    "the worker stopped renewing its lease (crashed, killed or frozen) while this run was "
    "the only one it executed; charged to the poison budget"
)
LOST_WITH_OTHERS = (
    "the worker stopped renewing its lease (crashed, killed or frozen) while it held other "
    "runs too; not charged to the poison budget: the next run executes alone"
)


def task_outcome(finish: RunFinish) -> tuple[str, str | None]:
    """The task's new status (and failure reason) after ``finish`` is written.

    Both databases apply this rule in Python: PostgreSQL's finish statement takes the result
    in its batch, SQLite updates the tasks grouped by it.
    """
    if finish.status == "succeeded":
        return "completed", None
    if finish.status == "cancelled":
        return "cancelled", None
    if finish.retry_delay is not None:
        return "retrying", None
    return "failed", finish.reason or "retries_exhausted"


def is_retry(finish: RunFinish) -> bool:
    """Whether ``finish`` schedules another run of its task."""
    return task_outcome(finish)[0] == "retrying"
