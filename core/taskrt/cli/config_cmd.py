"""``taskrt config``: the effective settings."""

from __future__ import annotations

import click

from taskrt.cli.output import print_json, print_table
from taskrt.cli.state import get_state


@click.group("config")
def config_group() -> None:
    """Inspect settings."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def show_command(as_json: bool) -> None:
    """Show the effective settings, secrets masked, and which backends are in use."""
    from taskrt.backends import describe_backend

    state = get_state()
    settings = state.settings
    state.runtime  # noqa: B018 - loading the plugins checks the settings sections they own
    data = {**settings.masked(), **settings.masked_sections()}
    backend = describe_backend(settings)
    if as_json:
        print_json({"settings": data, "backend": backend})
        return
    print_table("Settings", ["setting", "value"], sorted(data.items()))
    click.echo(f"store: {backend['store']}\nqueue: {backend['queue']} ({backend['reason']})")
