"""Keyset pagination: opaque cursors naming the last item of a page, and the query parameters.

A list asks the store for ``limit + 1`` items after the cursor; when the extra one exists the
page carries ``next_cursor``, the last item's id wrapped so clients treat it as opaque (and a
task cursor cannot be fed to the audit log by mistake).
"""

from __future__ import annotations

import base64
import binascii
import uuid
from typing import Annotated

from fastapi import Query

from taskrt.api.errors import LocatedValidationError

MAX_PAGE = 500

PageLimit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Most items per page.")]
Cursor = Annotated[
    str | None,
    Query(
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The `next_cursor` of the previous page.",
    ),
]


def encode_cursor(kind: str, value: str) -> str:
    """An opaque cursor for ``value`` (the last id of a page)."""
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


def _bad_cursor() -> LocatedValidationError:
    return LocatedValidationError(
        "cursor is not one this API handed out",
        [{"loc": ["query", "cursor"], "msg": "not a valid cursor"}],
    )


def task_cursor(cursor: str) -> uuid.UUID:
    """The task id inside a cursor of a task page; 422 if it is not one."""
    try:
        return uuid.UUID(decode_cursor("t", cursor) or "")
    except ValueError:
        raise _bad_cursor() from None


def audit_cursor(cursor: str) -> int:
    """The row id inside a cursor of an audit page; 422 if it is not one."""
    value = decode_cursor("a", cursor) or ""
    # isdigit() alone admits "²" and other digits int() refuses
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise _bad_cursor()
    return int(value)


def schedule_cursor(cursor: str) -> uuid.UUID:
    """The schedule id inside a cursor of a schedule page; 422 if it is not one."""
    try:
        return uuid.UUID(decode_cursor("s", cursor) or "")
    except ValueError:
        raise _bad_cursor() from None
