"""Keyset pagination: opaque cursors naming the last item of a page, and the query parameters.

A list asks the store for ``limit + 1`` items after the cursor; when the extra one exists the
page carries ``next_cursor``, the last item's id wrapped so clients treat it as opaque (and a
task cursor cannot be fed to the audit log by mistake). The wrapping itself lives in
:mod:`taskrt.store.search`, so ``taskrt task list`` prints the same cursors without FastAPI.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Query

from taskrt.api.errors import LocatedValidationError
from taskrt.store.search import decode_cursor, encode_cursor

__all__ = [
    "MAX_PAGE",
    "Cursor",
    "PageLimit",
    "audit_cursor",
    "decode_cursor",
    "encode_cursor",
    "schedule_cursor",
    "task_cursor",
]

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
