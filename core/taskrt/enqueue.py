"""What producers ask the service for and get back: :class:`EnqueueSpec`, :class:`EnqueueResult`,
:class:`ReplayResult`, and the checks of a spec that need no registry (what no store could hold,
a due time no store could read back).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from taskrt.exceptions import ValidationError
from taskrt.jsonlimits import Problem, json_problems, text_problems
from taskrt.records import FINISHED_TASK_STATUSES, EnqueueRequest, TaskInsert


@dataclass(slots=True)
class EnqueueSpec:
    """What a producer asks for; anything left ``None`` comes from the task type's defaults."""

    name: str
    payload: Any = None
    queue: str | None = None
    delay: float | None = None
    run_at: datetime | None = None
    dedup_key: str | None = None
    max_retries: int | None = None
    retry: str | None = None
    retry_params: Mapping[str, Any] | None = None
    timeout: float | None = None
    priority: int | None = None
    trace_id: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EnqueueSpec:
        """Build a spec from a dict (unknown keys are refused)."""
        allowed = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValidationError(
                f"unknown field(s) {', '.join(unknown)}",
                [{"loc": [key], "msg": "unknown field"} for key in unknown],
            )
        if "name" not in data:
            raise ValidationError(
                "a task needs a name", [{"loc": ["name"], "msg": "field required"}]
            )
        return cls(**data)


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """What enqueue did: the task's id, and whether it was created or an existing live task
    with the same dedup key was returned."""

    id: uuid.UUID
    created: bool
    name: str
    queue: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"id": str(self.id), "created": self.created, "name": self.name, "queue": self.queue}


FINISHED_STATUSES = FINISHED_TASK_STATUSES
"""The task statuses a task can be run again from (``taskrt task retry``)."""


@dataclass(slots=True)
class ReplayResult:
    """Which dead-lettered tasks a replay gave a new run."""

    replayed: list[uuid.UUID] = field(default_factory=list)
    skipped: list[uuid.UUID] = field(default_factory=list)


def input_problems(spec: EnqueueSpec, loc: tuple[Any, ...], *, max_depth: int) -> list[Problem]:
    """What in ``spec`` no store could hold or read back: JSON nested too deep, lone
    surrogates or NUL characters, numbers JSON cannot carry (see :mod:`taskrt.jsonlimits`)."""
    found = json_problems(spec.payload, [*loc, "payload"], max_depth=max_depth)
    if spec.retry_params is not None:
        found += json_problems(spec.retry_params, [*loc, "retry_params"], max_depth=max_depth)
    for name in ("name", "queue", "dedup_key", "retry", "trace_id"):
        found += text_problems(getattr(spec, name), [*loc, name])
    return found


def run_at_problem(run_at: object) -> str | None:
    """Why ``run_at`` cannot be a due time, or None: it needs a zone, and must still be a date
    once moved to UTC (``9999-12-31T23:59:59-14:00`` is not)."""
    if not isinstance(run_at, datetime):
        return "run_at must be a date and time"
    if run_at.tzinfo is None or run_at.utcoffset() is None:
        return "run_at must carry a time zone"
    try:
        run_at.astimezone(UTC)
    except OverflowError:
        return "run_at is out of range once moved to UTC (years 1 to 9999)"
    return None


def request_view(item: TaskInsert) -> EnqueueRequest:
    """What ``before_enqueue`` observers are shown of a prepared task."""
    return EnqueueRequest(
        name=item.name,
        payload=item.payload,
        queue=item.queue,
        available_at=item.run_at,
        dedup_key=item.dedup_key,
        max_retries=item.max_retries,
        retry=item.retry,
        retry_params=item.retry_params,
        timeout=item.timeout,
        priority=item.priority,
        trace_id=item.trace_id,
    )
