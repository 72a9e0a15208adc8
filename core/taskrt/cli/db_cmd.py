"""``taskrt db``: schema migrations."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from taskrt.cli.state import get_state

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


@click.group("db")
def db_group() -> None:
    """Create and migrate the database schema."""


def _engine() -> Engine:
    from taskrt.db.engine import engine_from_settings

    return engine_from_settings(get_state().settings)


@db_group.command("upgrade")
@click.argument("revision", default="head")
def upgrade_command(revision: str) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    from taskrt.db import migrate

    engine = _engine()
    migrate.upgrade(engine, revision)
    click.echo(f"database at revision {migrate.current_revision(engine)}")


@db_group.command("downgrade")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Do not ask before dropping data.")
def downgrade_command(revision: str, yes: bool) -> None:
    """Migrate the database down to REVISION (``base`` drops every taskrt table)."""
    from taskrt.db import migrate

    if not yes:
        click.confirm(f"Downgrade to {revision}? Tables and data may be dropped", abort=True)
    engine = _engine()
    migrate.downgrade(engine, revision)
    click.echo(f"database at revision {migrate.current_revision(engine) or 'base (empty)'}")


@db_group.command("current")
def current_command() -> None:
    """Show the database's revision and the newest one this taskrt ships."""
    from taskrt.db import migrate

    engine = _engine()
    current = migrate.current_revision(engine)
    head = migrate.head_revision()
    state = "up to date" if current == head else "needs `taskrt db upgrade`"
    click.echo(f"current: {current or 'none (empty database)'}\nhead:    {head}\n{state}")
