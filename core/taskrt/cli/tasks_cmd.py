"""``taskrt enqueue`` and ``taskrt task show|list|retry|cancel``."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from taskrt.cli.output import print_json, print_table
from taskrt.cli.state import get_state
from taskrt.exceptions import ValidationError
from taskrt.ids import parse_uuid
from taskrt.records import RunRecord, TaskRecord, TaskStatus


def parse_payload(text: str | None) -> Any:
    """``--payload``: JSON text, or ``@path`` to read JSON from a file (``@-``: stdin)."""
    if text is None:
        return None
    if text.startswith("@"):
        source = text[1:]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text("utf-8")
        except OSError as exc:
            raise ValidationError(f"cannot read payload file {source!r}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"--payload is not valid JSON: {exc}") from None
    except RecursionError:  # far past TASKRT_MAX_JSON_DEPTH: the parser itself gave up
        raise ValidationError(
            "--payload is nested too deep to parse (see TASKRT_MAX_JSON_DEPTH)",
            [{"loc": ["payload"], "msg": "nested too deep"}],
        ) from None


def seconds_text(span: timedelta) -> str:
    """A duration the way people read it: ``12 ms``, ``3.4 s``, ``5 min 2 s``."""
    seconds = span.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def parse_task_id(text: str) -> uuid.UUID:
    """A task id from the command line."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValidationError(f"{text!r} is not a task id (a UUID)") from None


@click.command("enqueue")
@click.argument("name")
@click.option("--payload", help="JSON payload, or @file to read it from a file (@- for stdin).")
@click.option("--queue", help="Queue (default: the task type's queue, else 'default').")
@click.option("--delay", type=float, help="Seconds to wait before the task may start.")
@click.option("--dedup-key", help="Return the live task holding this key instead of creating one.")
@click.option("--max-retries", type=int, help="Retries after the first attempt.")
@click.option("--retry", "retry", help="Retry strategy name.")
@click.option("--retry-params", help="Retry strategy parameters as JSON.")
@click.option("--timeout", type=float, help="Seconds one attempt may take.")
@click.option("--priority", type=int, help="Priority number stored with the task.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def enqueue_command(
    name: str,
    payload: str | None,
    queue: str | None,
    delay: float | None,
    dedup_key: str | None,
    max_retries: int | None,
    retry: str | None,
    retry_params: str | None,
    timeout: float | None,
    priority: int | None,
    as_json: bool,
) -> None:
    """Create a task of type NAME and print its id."""
    from taskrt.service import EnqueueSpec

    state = get_state()
    spec = EnqueueSpec(
        name=name,
        payload=parse_payload(payload),
        queue=queue,
        delay=delay,
        dedup_key=dedup_key,
        max_retries=max_retries,
        retry=retry,
        retry_params=parse_payload(retry_params) if retry_params else None,
        timeout=timeout,
        priority=priority,
    )
    result = state.service.enqueue(spec, actor=state.actor())
    if as_json:
        print_json(result.to_dict())
        return
    click.echo(str(result.id))
    if not result.created:
        click.echo("(a live task already held that dedup key; it was returned)", err=True)


@click.group("task")
def task_group() -> None:
    """Inspect, cancel and re-run single tasks."""


def render_task(task: TaskRecord) -> None:
    """Print a task and its runs as tables."""
    print_table(
        f"Task {task.id}",
        ["field", "value"],
        [
            ("name", task.name),
            (
                "status",
                task.status.value + (f" ({task.failure_reason})" if task.failure_reason else ""),
            ),
            ("queue", task.queue),
            ("priority", task.priority),
            ("payload", json.dumps(task.payload)[:200]),
            ("max retries", f"{task.max_retries} ({task.retry})"),
            ("dedup key", task.dedup_key or ""),
            ("trace id", task.trace_id or ""),
            ("created", task.created_at.isoformat()),
            ("finished", task.finished_at.isoformat() if task.finished_at else ""),
            (
                "cancel requested",
                task.cancel_requested_at.isoformat() if task.cancel_requested_at else "",
            ),
        ],
    )
    print_table(
        "Runs",
        ["attempt", "status", "started", "took", "worker", "result / error"],
        [
            (
                r.attempt,
                r.status.value + (f" ({r.outcome_reason})" if r.outcome_reason else ""),
                r.started_at.isoformat() if r.started_at else "",
                seconds_text(r.finished_at - r.started_at)
                if r.started_at and r.finished_at
                else "",
                str(r.worker_id)[:8] if r.worker_id else "",
                (f"{r.error_type}: {r.error_message}" if r.error_type else json.dumps(r.result))[
                    :120
                ],
            )
            for r in task.runs
        ],
    )


@task_group.command("show")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--result",
    "only_result",
    is_flag=True,
    help="Print only the result of a completed task, as JSON (exit status 1 while it has none).",
)
def show_command(task_id: str, as_json: bool, only_result: bool) -> None:
    """Show a task and every one of its runs."""
    task = get_state().service.get(parse_task_id(task_id))
    if only_result:
        if task.status is not TaskStatus.COMPLETED:
            raise click.ClickException(
                f"task {task.id} has no result: it is {task.status.value}"
                + (f" ({task.failure_reason})" if task.failure_reason else "")
            )
        print_json(task.result)
    elif as_json:
        print_json(task.to_dict())
    else:
        render_task(task)


@task_group.command("retry")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
def retry_command(task_id: str, as_json: bool) -> None:
    """Run a finished task (completed, failed or cancelled) again: a new run, a fresh retry
    budget, the same payload."""
    state = get_state()
    task = state.service.rerun(parse_task_id(task_id), actor=state.actor())
    if as_json:
        print_json(task.to_dict(runs=False))
    else:
        run = task.latest_run
        attempt = f" (attempt {run.attempt})" if run is not None else ""
        click.echo(f"task {task.id} queued again in {task.queue}{attempt}")


@task_group.command("cancel")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the task as JSON.")
def cancel_command(task_id: str, as_json: bool) -> None:
    """Cancel a task: a queued one never runs, a running one is asked to stop."""
    state = get_state()
    task = state.service.cancel(parse_task_id(task_id), actor=state.actor())
    if as_json:
        print_json(task.to_dict(runs=False))
    elif task.status.value == "cancelled":
        click.echo(f"task {task.id} cancelled")
    else:
        click.echo(f"task {task.id} is running; cancellation requested")


def parse_when(text: str, option: str) -> datetime:
    """A time on the command line: ISO 8601 with a time zone (``2026-12-01T09:00Z``), or a
    duration meaning that long ago (``2h``, ``7d``, ``30m``)."""
    from taskrt.settings_values import parse_duration

    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"{option}: {text!r} is neither an ISO time (2026-12-01T09:00Z) nor a duration "
            "ago (2h, 7d)"
        ) from None
    if stamp.tzinfo is None:
        raise ValidationError(f"{option}: {text!r} has no time zone (add Z or +00:00)")
    return stamp


def _when(option: str) -> Callable[[click.Context, click.Parameter, str | None], datetime | None]:
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
        return None if value is None else parse_when(value, option)

    return convert


@task_group.command("list")
@click.option(
    "--status", type=click.Choice([s.value for s in TaskStatus]), help="Only this status."
)
@click.option("--queue", help="Only tasks of this queue.")
@click.option("--type", "name", help="Only tasks of this type (task name).")
@click.option(
    "--kind",
    type=click.Choice(["immediate", "scheduled", "all"]),
    default="immediate",
    show_default=True,
    help="Tasks to run, the templates schedules fire, or both.",
)
@click.option("--created-after", callback=_when("--created-after"), help="ISO time or 2h (ago).")
@click.option("--created-before", callback=_when("--created-before"), help="ISO time or 2h.")
@click.option("--finished-after", callback=_when("--finished-after"), help="ISO time or 2h.")
@click.option("--finished-before", callback=_when("--finished-before"), help="ISO time or 2h.")
@click.option("--error-type", help="Only tasks whose last failed run raised this error type.")
@click.option("--dedup-key", help="Only tasks with this dedup key.")
@click.option(
    "--payload",
    "payload",
    multiple=True,
    metavar="PATH=VALUE",
    help="Only tasks whose payload holds VALUE at PATH (customer_id=42, region.code=eu; "
    '"42" in quotes is the string). Repeatable: all must hold.',
)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", help="The next cursor printed by the previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: the tasks and next_cursor.")
def list_command(
    status: str | None,
    queue: str | None,
    name: str | None,
    kind: str,
    created_after: datetime | None,
    created_before: datetime | None,
    finished_after: datetime | None,
    finished_before: datetime | None,
    error_type: str | None,
    dedup_key: str | None,
    payload: tuple[str, ...],
    limit: int,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Search tasks, newest first: every filter given must hold (docs/how-to/search.md)."""
    from taskrt.store.search import PayloadMatch, TaskSearch, decode_cursor, encode_cursor

    search = TaskSearch(
        status=status,
        queue=queue,
        name=name,
        kind=None if kind == "all" else kind,
        created_after=created_after,
        created_before=created_before,
        finished_after=finished_after,
        finished_before=finished_before,
        error_type=error_type,
        dedup_key=dedup_key,
        payload=tuple(PayloadMatch.parse(p, sep="=", option="--payload") for p in payload),
    )
    before = None
    if cursor is not None:
        before = parse_uuid(decode_cursor("t", cursor) or "")
        if before is None:
            raise ValidationError(f"--cursor: {cursor!r} is not a cursor this command printed")
    service = get_state().service
    found = service.list_tasks(search, limit=limit + 1, before=before)
    page = found[:limit]
    next_cursor = encode_cursor("t", str(page[-1].id)) if len(found) > limit else None
    latest = service.latest_runs([t.id for t in page])
    if as_json:
        items = [_item(t, latest.get(t.id)) for t in page]
        print_json({"items": items, "next_cursor": next_cursor})
        return
    print_table(
        None,
        ["task", "type", "queue", "status", "created", "finished", "last error"],
        [_row(t, latest.get(t.id)) for t in page],
    )
    if next_cursor is not None:
        click.echo(f"more: --cursor {next_cursor}", err=True)


def _item(task: TaskRecord, run: RunRecord | None) -> dict[str, Any]:
    return {**task.to_dict(runs=False), "latest_run": run.to_dict() if run is not None else None}


def _row(task: TaskRecord, run: RunRecord | None) -> tuple[str, ...]:
    error = run.error_type if run is not None and run.error_type else ""
    return (
        str(task.id),
        task.name,
        task.queue,
        task.status.value,
        task.created_at.isoformat(timespec="seconds"),
        task.finished_at.isoformat(timespec="seconds") if task.finished_at else "",
        error,
    )
