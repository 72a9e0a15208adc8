"""Domain limits: the bounds on what a task, a batch or a schedule may carry, stated once.

Every entry point enforces these: the service checks them in Python, the HTTP API's pydantic
schemas are built from them (so the OpenAPI document shows the same numbers), and settings that
bound the same quantities reuse them. JSON depth and the characters a store can hold live next
to their checks in :mod:`taskrt.jsonlimits`.

This module sits at the bottom of the layers and imports nothing of taskrt's.
"""

from __future__ import annotations

# --- names ------------------------------------------------------------------------------------

TASK_NAME_MAX = 200
"""Longest task type name (``email.send``), in characters."""

TASK_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)+$"
"""A task type name: dotted words of letters, digits, ``_`` and ``-``."""

QUEUE_NAME_MAX = 64
"""Longest queue name, in characters."""

QUEUE_NAME_PATTERN = rf"^[A-Za-z0-9_.-]{{1,{QUEUE_NAME_MAX}}}$"
"""A queue name: 1 to :data:`QUEUE_NAME_MAX` letters, digits, ``_``, ``.`` and ``-``."""

STRATEGY_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$"
"""A retry strategy name as a request may give it (at most 100 characters)."""

LABEL_MAX = 200
"""Longest free-text label a request may give: a schedule's name, an API key's name."""

DEDUP_KEY_MAX = 200
"""Longest dedup key (idempotency key), in characters."""

TRACE_ID_MAX = 128
"""Longest trace id stored with a task, in characters."""

# --- task options -----------------------------------------------------------------------------

MAX_RETRIES_LIMIT = 1000
"""Most retries a task may ask for (``max_retries``)."""

PRIORITY_MIN = -32768
"""Lowest priority number (the column is a 16-bit integer)."""

PRIORITY_MAX = 32767
"""Highest priority number (the column is a 16-bit integer)."""

TEN_YEARS = 10 * 365 * 86400
"""Ten years of 365 days, in seconds."""

REQUEST_SECONDS_MAX = TEN_YEARS
"""Longest ``delay`` or ``timeout`` an HTTP request may give: far enough for any real use, near
enough that the database can add it to now."""

SERVICE_DELAY_MAX = 100 * 365.25 * 86400
"""Longest ``delay`` the service accepts (100 years), from any producer: the due time must stay a
date every store can hold and read. The HTTP API asks for less (:data:`REQUEST_SECONDS_MAX`)."""

RETRY_DELAY_LIMIT = float(TEN_YEARS)
"""Longest delay before a retry that any setting or retry strategy may ask for (ten years).
``TASKRT_MAX_RETRY_DELAY`` (30 days by default) caps lower."""

# --- tenants ----------------------------------------------------------------------------------

TENANT_NAME_MAX = 64
"""Longest tenant name (the ``tenant`` columns are ``varchar(64)``)."""

TENANT_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
"""A tenant name: lower-case letters, digits, ``_`` and ``-``, starting with a letter or digit.
No ``/ { } : .`` and no upper case, so a name is safe in queue addresses, Redis hash tags and
channels, and Prometheus labels."""

TENANT_WEIGHT_MAX = 1000
"""Largest fair-dequeue weight of a tenant (the smallest is 1)."""

RESERVED_TENANTS = frozenset({"*"})
"""Names no tenant may take: ``*`` marks a worker serving several tenants."""

# --- batches ----------------------------------------------------------------------------------

SERVICE_BATCH_MAX = 10_000
"""Most tasks one ``TaskService.enqueue_many`` call creates (one transaction). The Python client
and ``taskrt enqueue-file`` batches go through it directly."""

HTTP_BATCH_MAX = 1000
"""Most items one HTTP request may carry: tasks of ``POST /api/v1/tasks/batch`` and task ids of a
replay. Smaller than :data:`SERVICE_BATCH_MAX` so one request stays well inside the body limit
and one API worker's time; larger batches go through the client or the CLI."""

__all__ = [
    "DEDUP_KEY_MAX",
    "HTTP_BATCH_MAX",
    "LABEL_MAX",
    "MAX_RETRIES_LIMIT",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "QUEUE_NAME_MAX",
    "QUEUE_NAME_PATTERN",
    "REQUEST_SECONDS_MAX",
    "RESERVED_TENANTS",
    "RETRY_DELAY_LIMIT",
    "SERVICE_BATCH_MAX",
    "SERVICE_DELAY_MAX",
    "STRATEGY_NAME_PATTERN",
    "TASK_NAME_MAX",
    "TASK_NAME_PATTERN",
    "TENANT_NAME_MAX",
    "TENANT_NAME_PATTERN",
    "TENANT_WEIGHT_MAX",
    "TEN_YEARS",
    "TRACE_ID_MAX",
]
