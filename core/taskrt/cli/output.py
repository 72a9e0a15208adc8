"""Printing for the CLI: JSON for machines, rich tables for people.

rich is imported on first use: every command imports this module, and the long-running ones
(``taskrt worker``, ``taskrt scheduler``) never draw a table, so they should not carry it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console


def console() -> Console:
    """A console on standard output; when it is not a terminal (a pipe, a file), tables are
    rendered wide instead of wrapping names at 80 columns."""
    from rich.console import Console

    return Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON."""
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Render rows as a table."""
    from rich.table import Table

    table = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console().print(table)


def fail(message: str, code: int = 1) -> None:
    """Print ``Error: message`` on standard error and exit with ``code``."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)
