"""``taskrt plugins``: what is installed and what each plugin registered."""

from __future__ import annotations

from typing import Any

import click

from taskrt.cli.output import print_json, print_table
from taskrt.cli.state import get_state
from taskrt.runtime import Runtime


def describe_plugins(runtime: Runtime) -> dict[str, Any]:
    """Plain data describing plugins, their registrations and failures."""
    registry = runtime.registry
    plugins: dict[str, dict[str, Any]] = {}
    for name, info in runtime.loaded.infos.items():
        plugins[name] = {
            "name": name,
            "distribution": info.distribution,
            "version": info.version,
            "module": info.module,
            "hooks": sorted(
                caller.name
                for caller in runtime.plugin_manager.get_hookcallers(
                    runtime.plugin_manager.get_plugin(name)
                )
                or []
            ),
            "task_types": [],
            "retry_strategies": [],
            "auth_backends": [],
        }
    section = {"task": "task_types", "retry": "retry_strategies", "auth": "auth_backends"}
    flat: dict[str, list[dict[str, Any]]] = {key: [] for key in section.values()}
    for (kind, item), info in sorted(registry.origins.items()):
        plugins[info.name][section[kind]].append(item)
        entry: dict[str, Any] = {
            "name": item,
            "plugin": info.name,
            "distribution": info.distribution,
            "version": info.version,
        }
        if kind == "task":
            task_type = registry.task_types[item]
            entry.update(
                {
                    "queue": task_type.queue,
                    "async": task_type.is_async,
                    "max_retries": task_type.max_retries,
                    "retry": task_type.retry,
                    "timeout": task_type.timeout,
                    "payload_model": (
                        task_type.payload_model.__name__ if task_type.payload_model else None
                    ),
                }
            )
        flat[section[kind]].append(entry)
    return {
        "plugins": list(plugins.values()),
        **flat,
        "failures": [
            {
                "plugin": f.name,
                "distribution": f.distribution,
                "version": f.version,
                "error": f.error,
            }
            for f in runtime.loaded.failures
        ],
        "skipped": list(runtime.loaded.skipped),
    }


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins and the task types, retry strategies and auth backends they add."""
    data = describe_plugins(get_state().runtime)
    if as_json:
        print_json(data)
        return
    print_table(
        "Plugins",
        ["plugin", "distribution", "version", "registers"],
        [
            (
                p["name"],
                p["distribution"] or "(explicit)",
                p["version"] or "",
                ", ".join(p["task_types"] + p["retry_strategies"] + p["auth_backends"]),
            )
            for p in data["plugins"]
        ],
    )
    print_table(
        "Task types",
        ["name", "queue", "async", "retries", "retry", "timeout", "distribution"],
        [
            (
                t["name"],
                t["queue"] or "(default)",
                "yes" if t["async"] else "no",
                t["max_retries"],
                t["retry"],
                t["timeout"] or "",
                t["distribution"] or "(explicit)",
            )
            for t in data["task_types"]
        ],
    )
    print_table(
        "Retry strategies",
        ["name", "distribution"],
        [(r["name"], r["distribution"] or "(explicit)") for r in data["retry_strategies"]],
    )
    if data["auth_backends"]:
        print_table(
            "Auth backends",
            ["name", "distribution"],
            [(a["name"], a["distribution"] or "(explicit)") for a in data["auth_backends"]],
        )
    for failure in data["failures"]:
        click.echo(
            f"failed to load: {failure['plugin']} ({failure['distribution']}): {failure['error']}",
            err=True,
        )
