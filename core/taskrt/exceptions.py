"""Every exception taskrt raises, in one place.

Errors (something went wrong)::

    TaskrtError
    ├── ConfigurationError          settings are missing or contradictory
    ├── PluginError
    │   ├── PluginLoadError         a plugin distribution failed to import or validate
    │   └── DuplicateRegistrationError
    │                               two plugins registered the same name
    ├── ValidationError             bad input; nothing was stored
    │   ├── UnknownTaskError        no plugin registered that task name
    │   └── PayloadValidationError  the payload does not fit the handler's model
    ├── NotFoundError               no such task, schedule, API key, ...
    │   └── UnknownTenantError      no such tenant
    ├── QuotaExceededError          a tenant's quota refuses the enqueue
    ├── InvalidStateError           the object exists but cannot make that move now
    ├── BackendUnavailableError     PostgreSQL, SQLite or Redis did not answer
    └── NonRetryableError           raised by a handler: dead-letter now, do not retry

Control flow (not errors; a handler raises them on purpose)::

    TaskControl
    ├── Retry                       retry this task after ``delay`` seconds
    └── TaskCancelled               cancellation was requested and the handler honours it
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


class TaskrtError(Exception):
    """Base class of every error taskrt raises."""


class ConfigurationError(TaskrtError):
    """Settings are missing, malformed or contradictory."""


class PluginError(TaskrtError):
    """A plugin could not be loaded or used."""


class PluginLoadError(PluginError):
    """A plugin distribution failed to import or did not validate against the hookspecs."""

    def __init__(self, plugin: str, distribution: str | None, reason: str) -> None:
        self.plugin = plugin
        self.distribution = distribution
        self.reason = reason
        where = f"distribution {distribution!r}" if distribution else "a module, not a distribution"
        super().__init__(f"plugin {plugin!r} from {where} failed to load: {reason}")


class DuplicateRegistrationError(PluginError):
    """Two plugins registered the same task type, retry strategy or auth backend name."""

    def __init__(self, kind: str, name: str, first: str, second: str) -> None:
        self.kind = kind
        self.name = name
        self.first = first
        self.second = second
        super().__init__(
            f"{kind} {name!r} is registered twice: by {first} and by {second}; "
            f"uninstall one of them or block one with TASKRT_PLUGINS_DISABLE"
        )


class ValidationError(TaskrtError):
    """Input was rejected; nothing was stored.

    ``errors`` holds one entry per problem, each with a ``loc`` (field path) and a ``msg``.
    """

    def __init__(self, message: str, errors: Sequence[dict[str, Any]] = ()) -> None:
        self.errors = list(errors)
        super().__init__(message)


class UnknownTaskError(ValidationError):
    """No installed plugin registered a task type of that name."""


class BatchValidationError(ValidationError):
    """A batch was refused and nothing stored. ``errors`` lists every problem, each ``loc``
    starting with its item's index; ``items`` holds each refused item's index with the error
    that item alone would have raised (so a caller can name the item without checking again)."""

    def __init__(
        self,
        message: str,
        errors: Sequence[dict[str, Any]],
        items: Sequence[tuple[int, ValidationError]],
    ) -> None:
        super().__init__(message, errors)
        self.items = list(items)


class PayloadValidationError(ValidationError):
    """The payload does not satisfy the task type's pydantic model."""


class NotFoundError(TaskrtError):
    """The task, run, schedule or key asked for does not exist."""


class UnknownTenantError(NotFoundError):
    """No tenant of that name exists."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        super().__init__(f"unknown tenant {tenant!r}")


class QuotaExceededError(TaskrtError):
    """A tenant's quota refuses the enqueue: too many queued tasks, or too fast.

    ``quota`` is ``"max-queued"`` or ``"enqueue-rate"``; ``limit`` the configured value;
    ``retry_after`` the seconds after which the enqueue may succeed (None when unknown).
    """

    def __init__(
        self, tenant: str, quota: str, limit: int | str, retry_after: float | None = None
    ) -> None:
        self.tenant = tenant
        self.quota = quota
        self.limit = limit
        self.retry_after = retry_after
        message = f"quota exceeded: tenant {tenant!r} reached its {quota} quota ({limit})"
        if retry_after is not None:
            message += f"; retry after {retry_after:.3g}s"
        super().__init__(message)


class InvalidStateError(TaskrtError):
    """The object exists but cannot make the requested move in its current state."""


class BackendUnavailableError(TaskrtError):
    """A backing service (database or Redis) did not answer."""


class NonRetryableError(TaskrtError):
    """Raised by a handler to fail the task at once: no retry, straight to the dead-letter queue."""


class TaskControl(Exception):  # noqa: N818 - control flow, deliberately not named *Error
    """Base class of the control-flow signals a handler may raise; they are not errors."""


class Retry(TaskControl):
    """Ask for another attempt after ``delay`` seconds (``None``: let the retry strategy decide).

    A retry still counts against the task's ``max_retries``.
    """

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        # NaN compares False with everything and infinity never comes due: refuse both.
        if delay is not None and not 0 <= delay < math.inf:
            raise ValueError(f"Retry delay must be a finite number >= 0 seconds, got {delay}")
        self.delay = delay
        self.reason = reason
        super().__init__(reason or (f"retry in {delay}s" if delay is not None else "retry"))


class TaskCancelled(TaskControl):
    """Raised in a handler (usually by ``ctx.raise_if_cancelled()``) to end the run cancelled."""
