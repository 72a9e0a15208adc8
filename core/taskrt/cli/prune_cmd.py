"""``taskrt prune``: delete finished tasks, old audit rows and schedule fires by the retention
settings (docs/how-to/retention.md)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from taskrt.cli.output import print_json, print_table
from taskrt.cli.state import get_state


@click.command("prune")
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Prune what is older than this (7d, 12h, 30m, 45s) instead of the retention settings.",
)
@click.option(
    "--status",
    "statuses",
    metavar="STATUSES",
    default="completed,failed,cancelled",
    show_default=True,
    help="Comma-separated finished statuses to prune.",
)
@click.option("--queue", help="Prune only tasks of this queue.")
@click.option("--type", "task_type", help="Prune only tasks of this type (task name).")
@click.option("--dry-run", is_flag=True, help="Print what would be deleted; delete nothing.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Delete at most this many rows per table, then stop (default: everything due).",
)
@click.option(
    "--archive",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append every pruned task with its runs to FILE as JSON lines (gzip if it ends in "
    ".gz), written before it is deleted.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def prune_command(
    older_than: str | None,
    statuses: str,
    queue: str | None,
    task_type: str | None,
    dry_run: bool,
    limit: int | None,
    archive: Path | None,
    as_json: bool,
) -> None:
    """Delete finished tasks (with their runs), audit rows and schedule fires older than their
    retention, in small batches, and print how many rows of each table went. Audit rows and
    schedule fires are left alone when --status, --queue or --type narrows the tasks. With a
    tenant named (--tenant, TASKRT_TENANT) only that tenant's tasks and audit rows are pruned
    (schedule fires are left to automatic retention); without, every tenant's."""
    from taskrt.prune import Archive, Pruner, PruneRequest, parse_older_than, parse_statuses

    request = PruneRequest(
        older_than=parse_older_than(older_than) if older_than is not None else None,
        statuses=parse_statuses(statuses),
        queue=queue,
        task_type=task_type,
        dry_run=dry_run,
        limit=limit,
    )
    state = get_state()
    if state.tenant_chosen:  # one tenant's tasks and audit rows only (fires are left alone)
        request = replace(request, tenant=state.check_tenant(state.tenant))
    pruner = Pruner(state.app.store, state.settings)
    if archive is not None and not dry_run:
        with Archive(archive) as sink:
            counts = pruner.run(request, archive=sink, actor=state.actor())
    else:
        counts = pruner.run(request, actor=state.actor())
    if as_json:
        print_json({"dry_run": dry_run, "deleted": counts.to_dict(), "more": counts.more})
        return
    print_table(
        "Would delete (dry run)" if dry_run else "Deleted",
        ["table", "rows"],
        list(counts.to_dict().items()),
    )
    if counts.more:
        click.echo("The limit stopped the prune; rows are still due: run it again.")
