"""Searching tasks: the filters of ``GET /api/v1/tasks`` and ``taskrt task list``, and the one
statement they become (docs/how-to/search.md).

Each filter reads an index on PostgreSQL (migration ``0003_search_indexes``): status, queue and
type lead their B-tree indexes with the id after them; the created time range becomes a range of
ids (ids are UUIDv7, whose first 48 bits are the Unix milliseconds they were made at); the
finished time range reads the pruning index ``(status, finished_at)`` (migration ``0004``); the
dedup key and the error type of runs have partial indexes; payload
equality is ``payload @> '{...}'`` on a GIN ``jsonb_path_ops`` index. Results come newest first
by id, and ``before`` (the last id of the previous page) is the keyset cursor.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement

from taskrt.db.types import UTCDateTime
from taskrt.exceptions import ValidationError
from taskrt.records import DEFAULT_TENANT, FINISHED_TASK_STATUSES
from taskrt.store.base import RUNS, TASKS

Scalar = str | int | float | bool | None
"""A value payload equality compares with: a JSON string, number, boolean or null."""

PAYLOAD_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_PAYLOAD_DEPTH = 8
MAX_PAYLOAD_MATCHES = 8


def _not_finite(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


@dataclass(frozen=True)
class PayloadMatch:
    """``payload.<path> == value``: the key path into the task's JSON payload and the value."""

    path: tuple[str, ...]
    value: Scalar

    @classmethod
    def parse(cls, text: str, *, sep: str, option: str) -> PayloadMatch:
        """``customer.id<sep>42``: a dotted key path, ``sep``, then the value. The value is
        read as JSON when it is a JSON scalar (``42``, ``true``, ``null``, ``"42"`` for the
        string), else taken as a string (``pending``); objects and arrays are refused. Bad
        text raises ValidationError naming ``option``."""
        if "\x00" in text:
            raise _bad(option, "a filter cannot hold a NUL character")
        path_text, found, value_text = text.partition(sep)
        example = f"{option} customer_id{sep}42"
        if not found:
            raise _bad(option, f"{text!r} has no {sep!r}: write PATH{sep}VALUE, e.g. {example}")
        return cls.of(path_text, _scalar(value_text, option), option=option, example=example)

    @classmethod
    def of(
        cls, path: str, value: Any, *, option: str = "payload", example: str = "customer_id"
    ) -> PayloadMatch:
        """``path`` (``customer.id``, or ``payload.customer.id``) and a JSON scalar; bad
        ones raise ValidationError naming ``option``."""
        if path.startswith("payload."):
            path = path[len("payload.") :]
        keys = tuple(path.split("."))
        if len(keys) > MAX_PAYLOAD_DEPTH or not all(PAYLOAD_KEY.match(key) for key in keys):
            raise _bad(
                option,
                f"{path!r} is not a payload key path: dot-separated keys of letters, "
                f"digits, '_' and '-' (at most {MAX_PAYLOAD_DEPTH} keys), e.g. {example}",
            )
        return cls(keys, _checked(value, option))

    def document(self) -> dict[str, Any]:
        """The JSON object a matching payload contains: ``{"customer": {"id": 42}}``."""
        doc: Any = self.value
        for key in reversed(self.path):
            doc = {key: doc}
        return dict(doc)


def _scalar(text: str, option: str) -> Scalar:
    try:
        value = json.loads(text, parse_constant=_not_finite)
    except (ValueError, RecursionError):
        return text
    return _checked(value, option)


def _checked(value: Any, option: str) -> Scalar:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        raise _bad(option, f"{value!r} is not a finite number")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise _bad(option, f"{value!r} is out of range (a 64-bit integer)")
    if isinstance(value, str) and "\x00" in value:
        raise _bad(option, "a value cannot hold a NUL character")
    if not isinstance(value, str | int | float):
        raise _bad(option, "payload equality compares strings, numbers, booleans and null only")
    return value


def _bad(option: str, message: str) -> ValidationError:
    return ValidationError(f"{option}: {message}", [{"loc": [option], "msg": message}])


@dataclass(frozen=True)
class TaskSearch:
    """Which tasks to list; every field given narrows the list (they are ANDed).

    ``kind`` ``immediate`` (the default) leaves out the templates schedules fire, ``scheduled``
    lists only them, None both. Time ranges are half-open: ``after`` inclusive, ``before``
    exclusive. ``created_*`` compare the millisecond in the task's id (made when the task was
    enqueued, by the enqueuing process's clock). ``error_type`` matches the error type of a
    task's last run that has one (the last failed or lost attempt).
    """

    status: str | None = None
    queue: str | None = None
    name: str | None = None
    kind: str | None = "immediate"
    created_after: datetime | None = None
    created_before: datetime | None = None
    finished_after: datetime | None = None
    finished_before: datetime | None = None
    error_type: str | None = None
    dedup_key: str | None = None
    payload: tuple[PayloadMatch, ...] = ()
    tenant: str = DEFAULT_TENANT
    """The tenant whose tasks are searched (every search is within one tenant)."""

    def __post_init__(self) -> None:
        for field in ("created_after", "created_before", "finished_after", "finished_before"):
            stamp = getattr(self, field)
            if stamp is not None and stamp.tzinfo is None:
                raise _bad(field, f"{stamp.isoformat()} has no time zone (add Z or +00:00)")
        if len(self.payload) > MAX_PAYLOAD_MATCHES:
            raise _bad("payload", f"at most {MAX_PAYLOAD_MATCHES} payload filters at once")


def encode_cursor(kind: str, value: str) -> str:
    """An opaque cursor for ``value`` (the last id of a page); ``kind`` tells lists apart
    (``t`` tasks, ``a`` audit rows, ``s`` schedules)."""
    raw = f"{kind}:{value}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(kind: str, cursor: str) -> str | None:
    """The value inside ``cursor``, or None if it is not a cursor of this kind."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    prefix, _, value = raw.partition(":")
    return value if prefix == kind and value else None


def id_floor(stamp: datetime) -> uuid.UUID:
    """The smallest UUIDv7 made at or after ``stamp``'s millisecond (ids before it are older)."""
    ms = math.floor(stamp.astimezone(UTC).timestamp() * 1000)
    return uuid.UUID(int=max(0, min(ms, (1 << 48) - 1)) << 80)


def search_statement(
    search: TaskSearch, *, limit: int, before: uuid.UUID | None = None
) -> sa.Select[Any]:
    """The SELECT of ``tasks`` rows matching ``search``, newest first, after the cursor."""
    # the tenant first: the search indexes lead with it
    where: list[ColumnElement[bool]] = [TASKS.c.tenant == search.tenant]
    if search.kind:
        where.append(TASKS.c.type == search.kind)
    if search.status:
        where.append(TASKS.c.status == search.status)
    if search.queue:
        where.append(TASKS.c.queue_name == search.queue)
    if search.name:
        where.append(TASKS.c.name == search.name)
    upper = [before] if before is not None else []
    if search.created_before is not None:
        upper.append(id_floor(search.created_before))
    top = min(upper, default=None)
    if top is not None:
        where.append(TASKS.c.id < top)
    lower = id_floor(search.created_after) if search.created_after is not None else None
    if lower is not None:
        where.append(TASKS.c.id >= lower)
    finished_range = search.finished_after is not None or search.finished_before is not None
    if finished_range and not search.status:  # only finished tasks have a finish time
        where.append(TASKS.c.status.in_(FINISHED_TASK_STATUSES))  # so the pruning index serves
    if search.finished_after is not None:
        stamp = sa.bindparam("finished_after", search.finished_after, type_=UTCDateTime())
        where.append(TASKS.c.finished_at >= stamp)
    if search.finished_before is not None:
        stamp = sa.bindparam("finished_before", search.finished_before, type_=UTCDateTime())
        where.append(TASKS.c.finished_at < stamp)
    if search.dedup_key is not None:
        where.append(TASKS.c.dedup_key == search.dedup_key)
    if search.error_type is not None:
        where.append(TASKS.c.id.in_(_last_error_is(search.error_type, top, lower)))
    where += [PayloadEquals(TASKS.c.payload, match) for match in search.payload]
    return sa.select(TASKS).where(*where).order_by(TASKS.c.id.desc()).limit(limit)


def _last_error_is(
    error_type: str, upper: uuid.UUID | None, lower: uuid.UUID | None
) -> sa.Select[Any]:
    """Ids of tasks whose last run with an error type has ``error_type`` (the id bounds are
    repeated here: the database does not carry inequalities across the semi-join)."""
    run, later = RUNS.alias("run"), RUNS.alias("later")
    newer_error = sa.exists().where(
        later.c.task_id == run.c.task_id,
        later.c.attempt > run.c.attempt,
        later.c.error_type.is_not(None),
    )
    stmt = sa.select(run.c.task_id).where(run.c.error_type == error_type, ~newer_error)
    if upper is not None:
        stmt = stmt.where(run.c.task_id < upper)
    if lower is not None:
        stmt = stmt.where(run.c.task_id >= lower)
    return stmt


class PayloadEquals(ColumnElement[bool]):
    """``payload.<path> == value``, written the way each database can answer it fast:
    containment (``@>``, served by the GIN index) on PostgreSQL, ``json_type`` and
    ``json_extract`` on SQLite. Its SQL depends on the match, so it is not cached."""

    type = sa.Boolean()
    inherit_cache = False

    def __init__(self, column: ColumnElement[Any], match: PayloadMatch) -> None:
        self.column = column
        self.wanted = match


@compiles(PayloadEquals)
def _payload_equals_default(element: PayloadEquals, compiler: Any, **kw: Any) -> str:
    raise NotImplementedError("payload search is implemented for PostgreSQL and SQLite only")


@compiles(PayloadEquals, "postgresql")
def _payload_equals_postgresql(element: PayloadEquals, compiler: Any, **kw: Any) -> str:
    document = sa.cast(sa.literal(element.wanted.document(), postgresql.JSONB), postgresql.JSONB)
    return str(compiler.process(element.column.op("@>")(document), **kw))


@compiles(PayloadEquals, "sqlite")
def _payload_equals_sqlite(element: PayloadEquals, compiler: Any, **kw: Any) -> str:
    path = "$" + "".join(f'."{key}"' for key in element.wanted.path)
    value = element.wanted.value
    json_type = sa.func.json_type(element.column, path)
    if value is None or isinstance(value, bool):
        expr = json_type == json.dumps(value)  # 'null', 'true', 'false'
    else:
        kinds = ["text"] if isinstance(value, str) else ["integer", "real"]
        expr = sa.and_(json_type.in_(kinds), sa.func.json_extract(element.column, path) == value)
    return str(compiler.process(expr, **kw))
