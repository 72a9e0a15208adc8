"""The ``taskrt`` command line.

Built-in commands live in small modules of this package; plugins add theirs through the
``register_commands`` hook, loaded the first time the command list is needed.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from taskrt._version import __version__
from taskrt.cli.api_cmd import api_command
from taskrt.cli.config_cmd import config_group
from taskrt.cli.db_cmd import db_group
from taskrt.cli.demo_cmd import demo_command
from taskrt.cli.dev_cmd import dev_command
from taskrt.cli.enqueue_file_cmd import enqueue_file_command
from taskrt.cli.plugins_cmd import plugins_command
from taskrt.cli.prune_cmd import prune_command
from taskrt.cli.queues_cmd import dlq_group, queue_group, queues_command, workers_command
from taskrt.cli.schedules_cmd import scheduler_command, schedules_group
from taskrt.cli.state import CliState, get_state
from taskrt.cli.tasks_cmd import enqueue_command, task_group
from taskrt.cli.tenants_cmd import tenants_group
from taskrt.cli.worker_cmd import worker_command
from taskrt.exceptions import TaskrtError
from taskrt.logs import configure_logging


class TaskrtGroup(click.Group):
    """A group that adds plugin commands on first lookup, after ``--config`` is known."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._plugin_commands_added = False

    def _add_plugin_commands(self, ctx: click.Context) -> None:
        if self._plugin_commands_added:
            return
        self._plugin_commands_added = True
        state = ctx.ensure_object(CliState)
        if state.config_file is None:
            state.config_file = ctx.params.get("config_file")
        try:
            state.runtime.add_commands(self)
        except TaskrtError as exc:
            click.echo(f"Warning: plugin commands unavailable: {exc}", err=True)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_plugin_commands(ctx)
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None:
            self._add_plugin_commands(ctx)
            command = super().get_command(ctx, cmd_name)
        return command


@click.group(cls=TaskrtGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="taskrt")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    envvar="TASKRT_CONFIG",
    help="TOML settings file (also TASKRT_CONFIG). Environment variables override it.",
)
@click.option(
    "--tenant",
    "tenant",
    envvar="TASKRT_TENANT",
    default=None,
    help="Tenant every command acts in (also TASKRT_TENANT; else the `tenant` setting, "
    "'default'). Another tenant's tasks, queues and schedules are not found.",
)
@click.pass_context
def cli(ctx: click.Context, config_file: str | None, tenant: str | None) -> None:
    """taskrt: a distributed task runtime.

    Producers enqueue tasks (CLI, Python client, HTTP API, cron schedules); workers on any
    number of machines run them. With no settings at all, everything lives in a SQLite file
    in the working directory.

    \b
    Start here:
      taskrt demo                        run a batch of example tasks, with a summary
      taskrt dev                         API, scheduler and worker in one process
      taskrt db upgrade                  create or migrate the schema
      taskrt plugins                     what task types are installed
      taskrt enqueue example.echo --payload '{"hi": 1}'
      taskrt worker --queues high,normal run tasks, high before normal
      taskrt queues                      what is waiting where
      taskrt api --port 8080             serve the HTTP API
    """
    state = ctx.ensure_object(CliState)
    state.config_file = config_file
    state.tenant_option = tenant
    # one-shot commands: warnings as text; the services switch to TASKRT_LOG_FORMAT and
    # TASKRT_LOG_LEVEL (taskrt.cli.observability)
    configure_logging(None, "cli", log_format="text", level="WARNING")


for _command in (
    demo_command,
    dev_command,
    worker_command,
    api_command,
    enqueue_command,
    enqueue_file_command,
    task_group,
    queues_command,
    queue_group,
    dlq_group,
    workers_command,
    scheduler_command,
    schedules_group,
    plugins_command,
    prune_command,
    tenants_group,
    db_group,
    config_group,
):
    cli.add_command(_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``taskrt`` console script."""
    try:
        cli.main(args=argv, prog_name="taskrt", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except TaskrtError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["cli", "get_state", "main"]
