"""``taskrt tenants create|list|show|update|delete``: tenants, their weights and quotas.

The command line has database access, so it acts as an operator: it manages any tenant. Every
change is audited as ``cli:<user>`` in the managed tenant.
"""

from __future__ import annotations

from typing import Any

import click

from taskrt.cli.output import print_json, print_table
from taskrt.cli.state import get_state
from taskrt.tenants import TenantService, TenantUsage

_NONE = ("none", "null", "unlimited")


def _service() -> TenantService:
    return TenantService(get_state().app.store)


def _max_queued(value: str | None, *, clearable: bool) -> Any:
    """``--max-queued``: an integer, or (updating) ``none`` to clear the quota."""
    if value is None:
        return None
    if clearable and value.strip().lower() in _NONE:
        return None
    try:
        return int(value)
    except ValueError:
        hint = " or none" if clearable else ""
        raise click.BadParameter(
            f"{value!r} is not an integer{hint}", param_hint="'--max-queued'"
        ) from None


def _rate(value: str | None, *, clearable: bool) -> str | None:
    if value is None or (clearable and value.strip().lower() in _NONE):
        return None
    return value


def _show(usages: list[TenantUsage], as_json: bool, title: str | None = "Tenants") -> None:
    if as_json:
        print_json([u.to_dict() for u in usages])
        return
    print_table(
        title,
        ["tenant", "weight", "max queued", "enqueue rate", "queued now"],
        [
            (
                u.tenant.name,
                u.tenant.weight,
                "unlimited" if u.tenant.max_queued is None else u.tenant.max_queued,
                u.tenant.enqueue_rate or "unlimited",
                u.queued,
            )
            for u in usages
        ],
    )


@click.group("tenants")
def tenants_group() -> None:
    """Tenants: create, list, change and delete them (weights and quotas)."""


@tenants_group.command("create")
@click.argument("name")
@click.option(
    "--weight", type=int, default=1, show_default=True, help="Share of fair dequeue (1-1000)."
)
@click.option(
    "--max-queued", "max_queued", metavar="N", help="Most tasks waiting to run (default: no limit)."
)
@click.option(
    "--enqueue-rate",
    "enqueue_rate",
    metavar="N/PERIOD",
    help="Most tasks created per second, minute or hour, e.g. 600/minute (default: no limit).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def create_command(
    name: str, weight: int, max_queued: str | None, enqueue_rate: str | None, as_json: bool
) -> None:
    """Create the tenant NAME (lower-case letters, digits, '_' and '-')."""
    tenants = _service()
    tenant = tenants.create(
        name,
        weight=weight,
        max_queued=_max_queued(max_queued, clearable=False),
        enqueue_rate=_rate(enqueue_rate, clearable=False),
        actor=get_state().actor(),
    )
    if as_json:
        print_json(TenantUsage(tenant, 0).to_dict())
        return
    click.echo(f"tenant {tenant.name} created")


@tenants_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_command(as_json: bool) -> None:
    """Every tenant with its weight, quotas and tasks waiting to run now."""
    _show(_service().usage(), as_json)


@tenants_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def show_command(name: str, as_json: bool) -> None:
    """One tenant with its weight, quotas and tasks waiting to run now."""
    usage = _service().usage_of(name)
    if as_json:
        print_json(usage.to_dict())
        return
    _show([usage], as_json, title=None)


@tenants_group.command("update")
@click.argument("name")
@click.option("--weight", type=int, help="Share of fair dequeue (1-1000).")
@click.option("--max-queued", "max_queued", metavar="N|none", help="none clears the quota.")
@click.option(
    "--enqueue-rate", "enqueue_rate", metavar="N/PERIOD|none", help="none clears the quota."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def update_command(
    name: str,
    weight: int | None,
    max_queued: str | None,
    enqueue_rate: str | None,
    as_json: bool,
) -> None:
    """Change the weight or quotas of tenant NAME; workers and API processes see the change
    within a few seconds."""
    changes: dict[str, Any] = {}
    if weight is not None:
        changes["weight"] = weight
    if max_queued is not None:
        changes["max_queued"] = _max_queued(max_queued, clearable=True)
    if enqueue_rate is not None:
        changes["enqueue_rate"] = _rate(enqueue_rate, clearable=True)
    if not changes:
        raise click.UsageError("give at least one of --weight, --max-queued, --enqueue-rate")
    tenants = _service()
    tenants.update(name, changes, actor=get_state().actor())
    if as_json:
        print_json(tenants.usage_of(name).to_dict())
        return
    click.echo(f"tenant {name} updated")


@tenants_group.command("delete")
@click.argument("name")
def delete_command(name: str) -> None:
    """Delete tenant NAME. Refused for default, and while it still holds tasks, schedules or
    API keys not revoked (nothing is deleted then)."""
    _service().delete(name, actor=get_state().actor())
    click.echo(f"tenant {name} deleted")
