"""The layers of core/taskrt hold, and the seams that keep them apart work.

The layer order is written once, in ``[tool.importlinter]`` of ``pyproject.toml``;
``lint-imports`` checks it (``make lint`` runs it too). The handlers module sits low and never
imports the client: ``TaskType.enqueue`` reaches the default client through a factory the
``taskrt`` package registers.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import taskrt
from taskrt import handlers
from taskrt.enqueue import EnqueueResult

ROOT = Path(__file__).resolve().parents[2]


def _lint_imports() -> str:
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert found, "lint-imports is not installed (it is in the dev extra)"
    return found


def test_the_import_contracts_are_kept() -> None:
    result = subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


class _Recorder:
    """Stands in for a client: remembers what it was asked to enqueue."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    def enqueue(self, name: str, payload: Any = None, **options: Any) -> EnqueueResult:
        self.calls.append((name, payload, options))
        return EnqueueResult(id=uuid.UUID(int=len(self.calls)), created=True, name=name, queue="q")


@taskrt.task("layers.echo")
def _echo(payload: Any) -> Any:
    return payload


def test_enqueue_goes_through_the_client_it_is_given() -> None:
    client = _Recorder()

    result = _echo.enqueue({"n": 1}, client=client, queue="high")

    assert result == EnqueueResult(id=uuid.UUID(int=1), created=True, name="layers.echo", queue="q")
    assert client.calls == [("layers.echo", {"n": 1}, {"queue": "high"})]


def test_enqueue_without_a_client_uses_the_default_the_package_registered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert handlers._default_enqueuer is not None  # set when taskrt was imported
    default = _Recorder()
    monkeypatch.setattr(handlers, "_default_enqueuer", lambda: default)

    _echo.enqueue({"n": 2}, delay=5)

    assert default.calls == [("layers.echo", {"n": 2}, {"delay": 5})]


def test_the_registered_default_is_the_clients_default_client() -> None:
    from taskrt.client import default_client

    factory = handlers._default_enqueuer
    assert factory is not None
    assert factory.__module__ == "taskrt"
    assert "default_client" in factory.__code__.co_names
    assert default_client.__module__ == "taskrt.client"


def test_enqueue_without_any_client_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "_default_enqueuer", None)

    with pytest.raises(taskrt.TaskrtError, match="no client given"):
        _echo.enqueue({"n": 3})
