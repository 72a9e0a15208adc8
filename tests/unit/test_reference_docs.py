"""The generated reference docs in docs/reference match the code they describe.

A setting, hook or command changed without `make docs` fails here, naming the file to regenerate.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import click
import pytest
from scripts import refdocs as docs

from taskrt import hookspecs
from taskrt.cli import cli
from taskrt.settings import Settings, load_settings

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference"


def _committed(name: str) -> str:
    filename, _ = docs.DOCS[name]
    path = REFERENCE / filename
    assert path.is_file(), f"{path} is missing: run `make docs`"
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", sorted(docs.DOCS))
def test_committed_reference_matches_code(name: str) -> None:
    filename, render = docs.DOCS[name]
    assert render() == _committed(name), (
        f"docs/reference/{filename} is stale: run `make docs` (python -m scripts.refdocs all)"
    )


@pytest.mark.parametrize("name", sorted(docs.DOCS))
def test_rendering_is_deterministic(name: str) -> None:
    _, render = docs.DOCS[name]
    assert render() == render()


def test_every_setting_is_documented() -> None:
    text = _committed("settings")
    for name, field in Settings.model_fields.items():
        assert f"### `{name}`" in text
        assert f"`TASKRT_{name.upper()}`" in text
        assert field.description, f"Settings.{name} has no description"
        assert field.description in text
    assert "falls back to `DATABASE_URL`" in text
    assert "falls back to `REDIS_URL`" in text


def test_example_toml_in_settings_reference_loads(tmp_path: Path) -> None:
    block = re.search(r"```toml\n(.*?)```", _committed("settings"), re.DOTALL)
    assert block is not None
    config = tmp_path / "taskrt.toml"
    config.write_text(block.group(1), encoding="utf-8")
    assert load_settings(config) == Settings()


def test_every_hook_is_documented_with_signature_and_docstring() -> None:
    text = _committed("hooks")
    specs = docs.hookspecs_in_order()
    declared = {
        name
        for name, obj in vars(hookspecs).items()
        if callable(obj) and hasattr(obj, f"{hookspecs.PROJECT_NAME}_spec")
    }
    assert {spec.__name__ for spec in specs} == declared
    assert len(declared) >= 12
    for spec in specs:
        assert f"### `{spec.__name__}`" in text
        signature = inspect.signature(spec)
        for param in signature.parameters.values():
            assert f"{param.name}: {param.annotation}" in text
        doc = inspect.getdoc(spec)
        assert doc, f"hookspec {spec.__name__} has no docstring"
        assert doc in text


def test_discovery_and_observer_hooks_are_grouped() -> None:
    text = _committed("hooks")
    discovery, observers = text.index("## Discovery hooks"), text.index("## Observer hooks")
    assert discovery < text.index("### `register_task_handlers`") < observers
    assert observers < text.index("### `after_execute`")
    assert "`register(TaskType[Any]) -> None`" in text


def _command_paths(group: click.Group, prefix: str) -> list[str]:
    paths = []
    for name, command in group.commands.items():
        paths.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            paths += _command_paths(command, f"{prefix} {name}")
    return paths


def test_every_builtin_command_is_documented() -> None:
    text = _committed("cli")
    paths = _command_paths(cli, "taskrt")
    assert {"taskrt plugins", "taskrt db upgrade", "taskrt config show"} <= set(paths)
    for path in paths:
        assert f"## `{path}`" in text
    assert "--json" in text


def test_check_mode_names_stale_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert docs.main(["all", "--check", "--out", str(tmp_path)]) == 1
    assert "settings.md" in capsys.readouterr().err
    assert docs.main(["all", "--out", str(tmp_path)]) == 0
    assert docs.main(["all", "--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "hooks.md").write_text("edited by hand\n", encoding="utf-8")
    assert docs.main(["hooks", "--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "hooks.md" in err
    assert "cli.md" not in err
