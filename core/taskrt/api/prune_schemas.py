"""Bodies of ``POST /api/v1/admin/prune``: what to prune, and how many rows went."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from taskrt.api.schemas import PlainText
from taskrt.settings_values import parse_duration

FinishedStatus = Literal["completed", "failed", "cancelled"]

DEFAULT_HTTP_LIMIT = 10_000
"""Rows per table one request deletes by default: a few seconds of work, well inside a proxy's
timeout (docs/how-to/retention.md)."""
MAX_HTTP_LIMIT = 1_000_000


class PruneIn(BaseModel):
    """The options of ``taskrt prune`` (no archive: the API writes no files)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"older_than": "30d", "status": ["failed"], "dry_run": True}]
        },
    )

    older_than: PlainText | None = Field(
        default=None,
        description="Prune what finished longer ago than this (`7d`, `12h`, `30m`, `45s`) "
        "instead of the retention settings.",
    )
    status: list[FinishedStatus] | None = Field(
        default=None, min_length=1, description="Finished statuses to prune (default: all three)."
    )
    queue: PlainText | None = Field(default=None, description="Prune only tasks of this queue.")
    type: PlainText | None = Field(default=None, description="Prune only tasks of this type.")
    dry_run: bool = Field(default=False, description="Count what would go; delete nothing.")
    limit: int = Field(
        default=DEFAULT_HTTP_LIMIT,
        ge=1,
        le=MAX_HTTP_LIMIT,
        description="Delete at most this many rows per table in this request; when `more` "
        "comes back true, rows are still due: call again.",
    )

    @field_validator("older_than")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_duration(value)
        return value


class PruneCountsOut(BaseModel):
    """Rows per table."""

    tasks: int
    runs: int
    audit: int
    schedule_fires: int


class PruneOut(BaseModel):
    """What a prune deleted (or, with ``dry_run``, would delete)."""

    dry_run: bool
    deleted: PruneCountsOut
    more: bool = Field(
        description="True when `limit` stopped the prune with rows still due (call again); "
        "always false for a dry run, which counts everything."
    )
