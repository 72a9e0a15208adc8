"""``taskrt scheduler`` and ``taskrt schedules add|list|show|enable|disable|delete|next|fires``."""

from __future__ import annotations

import sys
import uuid

import click

from taskrt.cli.observability import (
    log_format_option,
    metrics_port_option,
    refuse_multiprocess_dir,
    start_logging,
    start_metrics,
)
from taskrt.cli.output import print_json, print_table
from taskrt.cli.state import get_state
from taskrt.cli.tasks_cmd import parse_payload
from taskrt.exceptions import ValidationError
from taskrt.records import ScheduleRecord
from taskrt.schedule_service import TenantSchedules


def _service() -> TenantSchedules:
    """The schedule service bound to the command's tenant (``--tenant``)."""
    return get_state().schedules


def parse_schedule_id(text: str) -> uuid.UUID:
    """A schedule id from the command line."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValidationError(f"{text!r} is not a schedule id (a UUID)") from None


@click.command("scheduler")
@metrics_port_option
@log_format_option
def scheduler_command(metrics_port: int | None, log_format: str | None) -> None:
    """Fire cron schedules of every tenant until SIGTERM or Ctrl-C (run as many as you like);
    each schedule fires into its own tenant."""
    from functools import partial

    from taskrt import metrics
    from taskrt.scheduler.runner import Scheduler

    state = get_state()
    settings = state.settings
    refuse_multiprocess_dir("scheduler")
    start_logging(settings, "scheduler", log_format)
    app = state.app
    scheduler = Scheduler(app.schedules, tick=settings.scheduler_tick)
    if settings.metrics_queue_depth:
        metrics.watch_queues(partial(app.service.queues, tenant=None))
    stop_metrics = start_metrics(settings, metrics_port)
    scheduler.install_signal_handlers()
    code = scheduler.run()
    if stop_metrics is not None:
        stop_metrics()
    app.close()
    sys.exit(code)


@click.group("schedules")
def schedules_group() -> None:
    """Create, inspect and change cron schedules."""


def render(schedule: ScheduleRecord) -> None:
    """Print one schedule."""
    print_table(
        f"Schedule {schedule.id}",
        ["field", "value"],
        [
            ("name", schedule.name or ""),
            ("cron", schedule.cron),
            ("time zone", schedule.timezone),
            ("enabled", "yes" if schedule.enabled else "no"),
            ("misfire policy", schedule.misfire_policy),
            ("task", f"{schedule.task_name} on queue {schedule.queue}"),
            ("payload", str(schedule.payload)[:200]),
            (
                "last triggered",
                schedule.last_triggered_at.isoformat() if schedule.last_triggered_at else "",
            ),
            ("next fire", schedule.next_fire_at.isoformat() if schedule.next_fire_at else ""),
        ],
    )


@schedules_group.command("add")
@click.option("--cron", required=True, help='5 fields, or 6 with seconds first ("*/5 * * * *").')
@click.option("--timezone", "timezone", default="UTC", show_default=True, help="IANA zone.")
@click.option("--task", "task", required=True, help="Task type to fire.")
@click.option("--payload", help="JSON payload, or @file.")
@click.option("--queue", help="Queue (default: the task type's).")
@click.option(
    "--misfire",
    type=click.Choice(["skip", "coalesce", "all"]),
    default="coalesce",
    show_default=True,
    help="What to do with slots missed while no scheduler ran.",
)
@click.option("--name", help="A label for listings.")
@click.option("--disabled", is_flag=True, help="Create it disabled.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def add_command(
    cron: str,
    timezone: str,
    task: str,
    payload: str | None,
    queue: str | None,
    misfire: str,
    name: str | None,
    disabled: bool,
    as_json: bool,
) -> None:
    """Create a schedule and print its id."""
    schedule = _service().create(
        cron=cron,
        timezone=timezone,
        task=task,
        payload=parse_payload(payload),
        queue=queue,
        misfire_policy=misfire,
        name=name,
        enabled=not disabled,
        actor=get_state().actor(),
    )
    if as_json:
        print_json(schedule.to_dict())
    else:
        click.echo(str(schedule.id))


@schedules_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """Every schedule."""
    schedules = _service().list_schedules(limit=1000)
    if as_json:
        print_json([s.to_dict() for s in schedules])
        return
    print_table(
        "Schedules",
        ["id", "name", "cron", "zone", "task", "enabled", "misfire", "next fire (UTC)"],
        [
            (
                str(s.id),
                s.name or "",
                s.cron,
                s.timezone,
                s.task_name,
                "yes" if s.enabled else "no",
                s.misfire_policy,
                s.next_fire_at.isoformat() if s.next_fire_at else "",
            )
            for s in schedules
        ],
    )


@schedules_group.command("show")
@click.argument("schedule_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_command(schedule_id: str, as_json: bool) -> None:
    """One schedule."""
    schedule = _service().get(parse_schedule_id(schedule_id))
    if as_json:
        print_json(schedule.to_dict())
    else:
        render(schedule)


@schedules_group.command("enable")
@click.argument("schedule_id")
def enable_command(schedule_id: str) -> None:
    """Enable a schedule (slots missed while disabled follow its misfire policy)."""
    _service().update(parse_schedule_id(schedule_id), enabled=True, actor=get_state().actor())
    click.echo(f"schedule {schedule_id} enabled")


@schedules_group.command("disable")
@click.argument("schedule_id")
def disable_command(schedule_id: str) -> None:
    """Disable a schedule."""
    _service().update(parse_schedule_id(schedule_id), enabled=False, actor=get_state().actor())
    click.echo(f"schedule {schedule_id} disabled")


@schedules_group.command("delete")
@click.argument("schedule_id")
def delete_command(schedule_id: str) -> None:
    """Delete a schedule (tasks it already fired stay)."""
    _service().delete(parse_schedule_id(schedule_id), actor=get_state().actor())
    click.echo(f"schedule {schedule_id} deleted")


@schedules_group.command("next")
@click.argument("schedule_id")
@click.option("--count", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def next_command(schedule_id: str, count: int, as_json: bool) -> None:
    """Preview the next fire times, in the schedule's zone and in UTC."""
    from zoneinfo import ZoneInfo

    service = _service()
    schedule = service.get(parse_schedule_id(schedule_id))
    times = service.preview(schedule.id, count)
    zone = ZoneInfo(schedule.timezone)
    if as_json:
        print_json([{"local": t.astimezone(zone).isoformat(), "utc": t.isoformat()} for t in times])
        return
    print_table(
        f"Next {count} fires of {schedule.cron} ({schedule.timezone})",
        [schedule.timezone, "UTC"],
        [(t.astimezone(zone).isoformat(), t.isoformat()) for t in times],
    )


@schedules_group.command("fires")
@click.argument("schedule_id")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def fires_command(schedule_id: str, limit: int, as_json: bool) -> None:
    """Recent fires of a schedule and the tasks they created."""
    fires = _service().fires(parse_schedule_id(schedule_id), limit=limit)
    if as_json:
        print_json([f.to_dict() for f in fires])
        return
    print_table(
        "Fires",
        ["fire time (UTC)", "task", "lag (s)"],
        [(f.fire_at.isoformat(), str(f.task_id or ""), f"{f.lag:.3f}") for f in fires],
    )
