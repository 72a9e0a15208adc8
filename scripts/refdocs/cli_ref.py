"""The CLI reference (``cli.md``): every built-in command, walked through click."""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import click

from .common import GENERATED_NOTE


def _walk(ctx: click.Context) -> Iterator[click.Context]:
    """``ctx`` and a context for every built-in subcommand below it, depth first, by name.

    Reads ``group.commands`` rather than ``list_commands()``, which would load plugins.
    """
    yield ctx
    command = ctx.command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            sub = command.commands[name]
            if not sub.hidden:
                yield from _walk(click.Context(sub, info_name=name, parent=ctx))


def _help_markdown(text: str) -> list[str]:
    """A click help text as markdown; ``\\b`` paragraphs (kept as typed) become code blocks."""
    out: list[str] = []
    for paragraph in inspect.cleandoc(text).partition("\f")[0].split("\n\n"):
        lines = paragraph.splitlines()
        if lines and lines[0].strip() == "\b":
            out += ["```text", *lines[1:], "```", ""]
        elif paragraph.strip():
            out += [" ".join(line.strip() for line in lines), ""]
    return out


def _param_rows(ctx: click.Context) -> list[str]:
    """Markdown table rows for a command's arguments and options."""
    rows = []
    for param in ctx.command.get_params(ctx):
        if getattr(param, "hidden", False):
            continue
        default = param.default if isinstance(param.default, str | int | float) else None
        default_text = "" if default is None or isinstance(default, bool) else f"`{default}`"
        if isinstance(param, click.Option):
            record = param.get_help_record(ctx)
            names, help_text = record if record else (", ".join(param.opts), "")
            if isinstance(param.envvar, str) and param.envvar not in help_text:
                help_text += f" (env: `{param.envvar}`)"
        else:
            names, help_text = param.make_metavar(ctx), "argument"
            if param.required:
                help_text += ", required"
        help_text = help_text.replace("|", r"\|")
        rows.append(f"| `{names}` | {help_text} | {default_text} |")
    return rows


def render_cli() -> str:
    """The CLI reference: every built-in command of ``taskrt`` with its help and options."""
    from taskrt.cli import cli

    root = click.Context(cli, info_name="taskrt", **cli.context_settings)
    out = [
        GENERATED_NOTE.format(name="cli"),
        "",
        "# Command-line reference",
        "",
        "Every built-in command of `taskrt`. Plugins add their own through the "
        "`register_commands` hook; `taskrt --help` lists those too. Every command takes "
        "`-h`/`--help`.",
    ]
    for ctx in _walk(root):
        command = ctx.command
        pieces = " ".join(command.collect_usage_pieces(ctx))
        out += ["", f"## `{ctx.command_path}`", "", "```text", f"{ctx.command_path} {pieces}"]
        out += ["```", ""]
        out += _help_markdown(command.help or "")
        rows = _param_rows(ctx)
        if rows:
            out += ["| option or argument | description | default |", "|---|---|---|", *rows, ""]
        if isinstance(command, click.Group):
            out += ["| command | summary |", "|---|---|"]
            for name in sorted(command.commands):
                sub = command.commands[name]
                if not sub.hidden:
                    anchor = f"{ctx.command_path} {name}".replace(" ", "-")
                    summary = sub.get_short_help_str(limit=200)
                    out.append(f"| [`{name}`](#{anchor}) | {summary} |")
            out.append("")
    lines = [line for i, line in enumerate(out) if line or (i and out[i - 1])]
    return "\n".join(lines).rstrip("\n") + "\n"
