"""The core never imports the built-in plugins, not even by a string name.

Built-in plugins reach the core only through the ``taskrt`` entry-point group, exactly like
third-party ones; so the core must work with ``taskrt_plugins`` blocked or absent.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "core" / "taskrt"
FORBIDDEN = "taskrt_plugins"


def _imported_modules(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []


def references(source: str) -> list[str]:
    """Each import of, or string literal mentioning, ``taskrt_plugins`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        for module in _imported_modules(node):
            if module.split(".")[0] == FORBIDDEN:
                found.append(f"import {module} (line {node.lineno})")  # type: ignore[attr-defined]
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and FORBIDDEN in node.value
        ):
            found.append(f"string {node.value[:60]!r} (line {node.lineno})")
    return found


def core_files() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_scan_covers_the_core() -> None:
    names = {str(path.relative_to(CORE)) for path in core_files()}

    assert {"__init__.py", "plugins.py", "runtime.py", "cli/__init__.py"} <= names
    assert any(name.startswith("db/migrations/versions/") for name in names)


@pytest.mark.parametrize(
    "source",
    [
        "import taskrt_plugins",
        "import taskrt_plugins.retry_strategies as rs",
        "import os, taskrt_plugins",
        "from taskrt_plugins import retry_strategies",
        "from taskrt_plugins.retry_strategies import Exponential",
        "import importlib\nimportlib.import_module('taskrt_plugins.retry_strategies')",
        "MODULES = ['taskrt_plugins.auth']",
        "def f():\n    from taskrt_plugins import x\n    return x",
        "if False:\n    import taskrt_plugins",
        "name = f'taskrt_plugins.{kind}'",
    ],
)
def test_the_scan_catches_each_kind_of_reference(source: str) -> None:
    assert references(source) != []


@pytest.mark.parametrize(
    "source",
    [
        "import taskrt",
        "from taskrt import plugins",
        "from . import plugins",
        "x = 'taskrt.plugins'",
    ],
)
def test_the_scan_lets_core_imports_through(source: str) -> None:
    assert references(source) == []


def test_core_never_references_taskrt_plugins() -> None:
    offenders = {
        str(path.relative_to(CORE.parent)): found
        for path in core_files()
        if (found := references(path.read_text(encoding="utf-8")))
    }

    assert offenders == {}, "the core must not import the built-in plugins: " + repr(offenders)
