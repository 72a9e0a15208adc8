"""Importing taskrt connects to nothing, creates no file and loads no plugin.

Each check runs in a fresh interpreter (a module imported once in this test process would hide
what a first import does), in an empty working directory and without any taskrt setting.
Audit hooks see every socket and file the import opens.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.plugin_dists import clean_env

PROBE = textwrap.dedent(
    """
    import importlib, importlib.metadata, json, os, sys

    events = {"sockets": [], "writes": [], "processes": []}

    def audit(event, args):
        if event.startswith("socket.") and event in (
            "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.sendto"
        ):
            events["sockets"].append([event, repr(args)])
        elif event == "open":
            path, mode, flags = args
            writing = flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND)
            if (mode and any(c in mode for c in "wax+")) or writing:
                events["writes"].append(repr(path))
        elif event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec"):
            events["processes"].append([event, repr(args)])

    sys.addaudithook(audit)

    for name in MODULES:
        importlib.import_module(name)

    plugin_modules = sorted(
        {ep.module for ep in importlib.metadata.entry_points(group="taskrt")}
    )
    print(json.dumps({
        **events,
        "plugin_modules": plugin_modules,
        "loaded": sorted(sys.modules),
    }))
    """
)


def _probe(modules: list[str], cwd: Path) -> dict[str, Any]:
    code = f"MODULES = {modules!r}\n{PROBE}"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env=clean_env({"PYTHONDONTWRITEBYTECODE": "1"}),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture(scope="module")
def import_taskrt(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    cwd = tmp_path_factory.mktemp("empty-cwd")
    return _probe(["taskrt"], cwd), cwd


def test_import_creates_no_file(import_taskrt: tuple[dict[str, Any], Path]) -> None:
    data, cwd = import_taskrt

    assert list(cwd.iterdir()) == []
    assert data["writes"] == []


def test_import_opens_no_socket(import_taskrt: tuple[dict[str, Any], Path]) -> None:
    data, _ = import_taskrt

    assert data["sockets"] == []
    assert data["processes"] == []


def test_import_loads_no_plugin(import_taskrt: tuple[dict[str, Any], Path]) -> None:
    data, _ = import_taskrt
    loaded = set(data["loaded"])

    # the probe must see the installed plugins, or the check below proves nothing
    assert "taskrt_plugins.retry_strategies" in data["plugin_modules"]
    assert "taskrt_handlers_example.plugin" in data["plugin_modules"]
    for module in data["plugin_modules"]:
        assert module not in loaded, f"{module} was imported by `import taskrt`"
    assert not [
        m for m in loaded if m.split(".")[0] in {"taskrt_plugins", "taskrt_handlers_example"}
    ]


def test_import_leaves_the_runtime_and_clients_for_first_use(
    import_taskrt: tuple[dict[str, Any], Path],
) -> None:
    """As taskrt's docstring promises: ``taskrt.Runtime`` and ``taskrt.Client`` load lazily."""
    loaded = set(import_taskrt[0]["loaded"])

    assert "taskrt" in loaded
    assert "taskrt.runtime" not in loaded
    assert "taskrt.client" not in loaded


def _taskrt_modules() -> list[str]:
    import pkgutil

    import taskrt

    names = ["taskrt"]
    for info in pkgutil.walk_packages(taskrt.__path__, "taskrt."):
        # Alembic's env.py runs migrations when imported: it is a script, not a module.
        if ".db.migrations" in info.name:
            continue
        names.append(info.name)
    return names


def test_importing_every_core_module_has_no_side_effects(tmp_path: Path) -> None:
    modules = _taskrt_modules()
    assert {"taskrt.cli", "taskrt.runtime", "taskrt.plugins", "taskrt.db.models"} <= set(modules)

    data = _probe(modules, tmp_path)

    assert list(tmp_path.iterdir()) == []
    assert data["writes"] == []
    assert data["sockets"] == []
    assert data["processes"] == []
    loaded = set(data["loaded"])
    for module in data["plugin_modules"]:
        assert module not in loaded, f"{module} was imported by importing the core"


def test_the_probe_sees_sockets_files_and_plugins(tmp_path: Path) -> None:
    """Guards the checks above: a module that does all the forbidden things is caught."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "noisy_module.py").write_text(
        textwrap.dedent(
            """
            import socket

            import taskrt_handlers_example.plugin  # noqa: F401

            open("created-at-import.txt", "w").close()
            try:
                socket.create_connection(("127.0.0.1", 9), timeout=0.5).close()
            except OSError:
                pass
            """
        )
    )
    code = f"import sys; sys.path.insert(0, {str(package)!r})\nMODULES = ['noisy_module']\n"
    result = subprocess.run(
        [sys.executable, "-c", code + PROBE],
        cwd=tmp_path,
        env=clean_env({"PYTHONDONTWRITEBYTECODE": "1"}),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data = json.loads(result.stdout)

    assert any("created-at-import.txt" in path for path in data["writes"])
    assert "socket.connect" in [event for event, _ in data["sockets"]]
    assert "taskrt_handlers_example.plugin" in data["loaded"]
