"""``taskrt queues``, ``taskrt queue pause|resume``, ``taskrt dlq list|replay`` and
``taskrt workers``."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import click

from taskrt.cli.output import print_json, print_table
from taskrt.cli.state import get_state
from taskrt.cli.tasks_cmd import parse_task_id, seconds_text
from taskrt.exceptions import ValidationError


@click.command("queues")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def queues_command(as_json: bool) -> None:
    """Ready, delayed, in-flight and dead-letter counts and the paused state of every queue."""
    counts = get_state().service.queues()
    if as_json:
        print_json([c.to_dict() for c in counts])
        return
    print_table(
        "Queues",
        ["queue", "ready", "delayed", "inflight", "dlq", "paused"],
        [
            (c.name, c.ready, c.delayed, c.inflight, c.dlq, "yes" if c.paused else "")
            for c in counts
        ],
    )


@click.group("queue")
def queue_group() -> None:
    """Pause and resume queues."""


@queue_group.command("pause")
@click.argument("name")
def pause_command(name: str) -> None:
    """Stop workers fetching from queue NAME (running tasks go on)."""
    state = get_state()
    state.service.pause(name, actor=state.actor())
    click.echo(f"queue {name} paused")


@queue_group.command("resume")
@click.argument("name")
def resume_command(name: str) -> None:
    """Let workers fetch from queue NAME again."""
    state = get_state()
    state.service.resume(name, actor=state.actor())
    click.echo(f"queue {name} resumed")


@click.group("dlq")
def dlq_group() -> None:
    """List and replay dead-lettered tasks."""


@dlq_group.command("list")
@click.argument("queue")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--before", help="Cursor: list tasks older than this task id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dlq_list_command(queue: str, limit: int, before: str | None, as_json: bool) -> None:
    """Dead-lettered tasks of QUEUE, newest first, with their last error."""
    tasks = get_state().service.dead_letters(
        queue, limit=limit, before=parse_task_id(before) if before else None
    )
    if as_json:
        print_json([t.to_dict() for t in tasks])
        return
    print_table(
        f"Dead letters of {queue}",
        ["task", "name", "reason", "attempts", "last error"],
        [
            (
                str(t.id),
                t.name,
                t.failure_reason or "",
                t.latest_run.attempt if t.latest_run else "",
                (
                    f"{t.latest_run.error_type}: {t.latest_run.error_message}"
                    if t.latest_run and t.latest_run.error_type
                    else ""
                )[:100],
            )
            for t in tasks
        ],
    )


@dlq_group.command("replay")
@click.argument("targets", nargs=-1, metavar="[QUEUE] [TASK_ID]...")
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead-lettered task of QUEUE.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dlq_replay_command(targets: tuple[str, ...], replay_all: bool, as_json: bool) -> None:
    """Give dead-lettered tasks a new run: the listed TASK_IDs (their queue need not be named;
    if it is, only tasks of that queue are replayed), or every one of QUEUE with --all.
    Exits with status 1 when nothing was replayed."""
    queue, task_ids = _replay_targets(targets)
    if bool(task_ids) == replay_all:
        raise ValidationError("give task ids or --all (not both)")
    if replay_all and queue is None:
        raise ValidationError("--all needs the queue: taskrt dlq replay QUEUE --all")
    state = get_state()
    ids: list[uuid.UUID] | None = [parse_task_id(t) for t in task_ids] if task_ids else None
    from rich.progress import Progress

    with Progress(transient=True, disable=as_json) as progress:
        bar = progress.add_task(f"replaying {queue or ''}", total=len(ids) if ids else None)
        result = state.service.replay(
            queue,
            ids,
            replay_all=replay_all,
            actor=state.actor(),
            progress=lambda n: progress.advance(bar, n),
        )
    if as_json:
        print_json(
            {
                "replayed": [str(t) for t in result.replayed],
                "skipped": [str(t) for t in result.skipped],
            }
        )
    else:
        click.echo(f"replayed {len(result.replayed)} task(s)")
        if result.skipped:
            where = f" in {queue}" if queue else ""
            click.echo(
                f"skipped {len(result.skipped)} (not dead-lettered{where}): "
                + json.dumps([str(t) for t in result.skipped][:10]),
                err=True,
            )
    if not result.replayed:
        raise SystemExit(1)


def _replay_targets(targets: tuple[str, ...]) -> tuple[str | None, list[str]]:
    """Split ``[QUEUE] [TASK_ID]...``: a first word that is not a task id names the queue."""
    if not targets:
        return None, []
    first, rest = targets[0], list(targets[1:])
    try:
        uuid.UUID(first)
    except ValueError:
        return first, rest
    return None, [first, *rest]


@click.command("workers")
@click.option("--all", "include_offline", is_flag=True, help="Include offline workers.")
@click.option("--all-tenants", is_flag=True, help="Workers of every tenant (not only --tenant's).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workers_command(include_offline: bool, all_tenants: bool, as_json: bool) -> None:
    """Registered workers serving the tenant (--tenant), with their queues, concurrency and
    last heartbeat."""
    workers = get_state().service.workers(
        include_offline=include_offline or as_json, all_tenants=all_tenants
    )
    if as_json:
        print_json([w.to_dict() for w in workers])
        return
    now = datetime.now(UTC)
    print_table(
        "Workers",
        ["name", "status", "queues", "concurrency", "host", "pid", "last heartbeat", "version"],
        [
            (
                w.name,
                w.status.value,
                ",".join(w.queues),
                w.concurrency,
                w.hostname,
                w.pid,
                _ago(now, w.heartbeat_at),
                w.version,
            )
            for w in workers
        ],
    )


def _ago(now: datetime, when: datetime | None) -> str:
    """``4.2 s ago`` (a stored time without a zone is UTC)."""
    if when is None:
        return ""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return f"{seconds_text(max(now - when, timedelta(0)))} ago"
