"""Generate the reference docs from the code, so they cannot drift from it.

``python -m scripts.refdocs settings|hooks|cli|http|metrics|all [--check] [--out DIR]`` writes
``settings.md``, ``hooks.md``, ``cli.md``, ``http-api.md`` (the HTTP API, from its OpenAPI
document) and ``metrics.md`` (from the metrics catalogue) into ``DIR`` (default
``docs/reference`` under the working directory). With ``--check`` nothing is written: the
command exits 1 naming every file that is missing or differs from what the code says, which is
how CI and the tests catch a setting, hook, command, route or metric that changed without its
docs. Output depends only on the code, never on the environment, the
terminal or installed plugins.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .cli_ref import render_cli
from .common import DEFAULT_OUT, GENERATED_NOTE
from .hooks_ref import hookspecs_in_order, render_hooks
from .http_ref import render_http
from .metrics_ref import render_metrics
from .settings_ref import render_settings

DOCS: dict[str, tuple[str, Callable[[], str]]] = {
    "settings": ("settings.md", render_settings),
    "hooks": ("hooks.md", render_hooks),
    "cli": ("cli.md", render_cli),
    "http": ("http-api.md", render_http),
    "metrics": ("metrics.md", render_metrics),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the reference docs; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m scripts.refdocs", description=__doc__)
    parser.add_argument("which", choices=[*DOCS, "all"], help="which reference to generate")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    names = list(DOCS) if args.which == "all" else [args.which]
    stale = []
    for name in names:
        filename, render = DOCS[name]
        path: Path = args.out / filename
        text = render()
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if args.check:
            if current != text:
                stale.append(path)
        elif current != text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
            print(f"wrote {path}")
    for path in stale:
        print(
            f"{path} is missing or stale: run `python -m scripts.refdocs all` (or `make docs`)",
            file=sys.stderr,
        )
    return 1 if stale else 0


__all__ = [
    "DEFAULT_OUT",
    "DOCS",
    "GENERATED_NOTE",
    "hookspecs_in_order",
    "main",
    "render_cli",
    "render_hooks",
    "render_http",
    "render_metrics",
    "render_settings",
]
