"""Plugin loading with explicit plugins: validation, failures, duplicates, observers, tracing.

Discovery through real entry points of installed distributions is in
``tests/integration/test_plugin_discovery.py``.
"""

from __future__ import annotations

import logging
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import pytest

import taskrt
from taskrt.exceptions import DuplicateRegistrationError, UnknownTaskError
from taskrt.plugins import Observers
from taskrt.runtime import Runtime
from taskrt.settings import Settings

hookimpl = taskrt.hookimpl


def _load(*plugins: object, **settings: Any) -> Runtime:
    return Runtime.load(Settings(**settings), plugins=plugins, entry_points=False)


def _task(name: str) -> taskrt.TaskType[Any]:
    return taskrt.task(name)(lambda payload: payload)


class Registers:
    """A plugin registering the given task types and retry strategies."""

    def __init__(self, *tasks: str, strategies: tuple[str, ...] = ()) -> None:
        self.tasks = [_task(name) for name in tasks]
        self.strategies = strategies

    @hookimpl
    def register_task_handlers(self, register: Callable[..., None]) -> None:
        for task_type in self.tasks:
            register(task_type)

    @hookimpl
    def register_retry_strategies(self, register: Callable[..., None]) -> None:
        for name in self.strategies:
            register(name, lambda: None)


class AlphaPlugin(Registers):
    pass


class BetaPlugin(Registers):
    pass


# --- loading --------------------------------------------------------------------------------


def test_explicit_plugins_only_when_entry_points_are_off() -> None:
    runtime = _load(AlphaPlugin("alpha.one", strategies=("alpha.retry",)))

    assert set(runtime.registry.task_types) == {"alpha.one"}
    assert set(runtime.registry.retry_strategies) == {"alpha.retry"}
    assert runtime.loaded.failures == []
    origin = runtime.registry.origin("task", "alpha.one")
    assert origin is not None
    assert origin.name == "AlphaPlugin"
    assert origin.distribution is None


def test_each_runtime_has_its_own_plugin_manager() -> None:
    first = _load(AlphaPlugin("alpha.one"))
    second = _load(BetaPlugin("beta.one"))

    assert first.plugin_manager is not second.plugin_manager
    assert set(first.registry.task_types) == {"alpha.one"}
    assert set(second.registry.task_types) == {"beta.one"}


def test_unknown_task_is_refused_with_the_known_names() -> None:
    runtime = _load(AlphaPlugin("alpha.one", "alpha.two"))

    with pytest.raises(UnknownTaskError) as excinfo:
        runtime.registry.task_type("alpha.three")

    assert "alpha.three" in str(excinfo.value)
    assert "alpha.one, alpha.two" in str(excinfo.value)


# --- duplicates -----------------------------------------------------------------------------


def test_duplicate_task_name_names_both_plugins() -> None:
    with pytest.raises(DuplicateRegistrationError) as excinfo:
        _load(AlphaPlugin("shared.task", "alpha.only"), BetaPlugin("shared.task"))

    error = excinfo.value
    assert error.name == "shared.task"
    assert error.kind == "task type"
    assert {error.first, error.second} == {
        "plugin 'AlphaPlugin' (module AlphaPlugin, not from a distribution)",
        "plugin 'BetaPlugin' (module BetaPlugin, not from a distribution)",
    }
    assert "'AlphaPlugin'" in str(error)
    assert "'BetaPlugin'" in str(error)
    assert "TASKRT_PLUGINS_DISABLE" in str(error)  # says what to do about it


def test_duplicate_retry_strategy_names_both_plugins() -> None:
    with pytest.raises(DuplicateRegistrationError) as excinfo:
        _load(AlphaPlugin(strategies=("backoff",)), BetaPlugin(strategies=("backoff",)))

    assert excinfo.value.kind == "retry strategy"
    assert "AlphaPlugin" in str(excinfo.value)
    assert "BetaPlugin" in str(excinfo.value)


def test_one_plugin_registering_a_name_twice_is_a_duplicate() -> None:
    with pytest.raises(DuplicateRegistrationError, match=r"'again\.task'"):
        _load(AlphaPlugin("again.task", "again.task"))


def test_two_instances_of_one_plugin_class_get_distinct_names() -> None:
    runtime = _load(AlphaPlugin("a.one"), AlphaPlugin("a.two"))

    assert set(runtime.loaded.infos) == {"AlphaPlugin", "AlphaPlugin#2"}
    origin = runtime.registry.origin("task", "a.two")
    assert origin is not None
    assert origin.name == "AlphaPlugin#2"


# --- broken plugins -------------------------------------------------------------------------


class Misspelt:
    @hookimpl
    def register_task_handler(self, register: Callable[..., None]) -> None:  # no "s"
        register(_task("misspelt.task"))

    @hookimpl
    def register_retry_strategies(self, register: Callable[..., None]) -> None:
        register("misspelt.retry", lambda: None)


def test_misspelt_hook_is_a_recorded_failure_and_others_load(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="taskrt.plugins"):
        runtime = _load(Misspelt(), AlphaPlugin("alpha.one"))

    (failure,) = runtime.loaded.failures
    assert failure.name == "Misspelt"
    assert "register_task_handler" in failure.error
    assert "misspelt" in failure.error
    # the whole plugin is left out, not half of it
    assert "Misspelt" not in runtime.loaded.infos
    assert "misspelt.retry" not in runtime.registry.retry_strategies
    assert set(runtime.registry.task_types) == {"alpha.one"}
    assert any("Misspelt" in record.getMessage() for record in caplog.records)


class WrongArgument:
    @hookimpl
    def register_task_handlers(self, reg: Callable[..., None]) -> None:
        reg(_task("wrong.task"))


def test_hook_with_an_argument_the_spec_lacks_is_a_recorded_failure() -> None:
    runtime = _load(WrongArgument(), AlphaPlugin("alpha.one"))

    (failure,) = runtime.loaded.failures
    assert failure.name == "WrongArgument"
    assert "reg" in failure.error
    assert set(runtime.registry.task_types) == {"alpha.one"}


class RaisesInDiscovery:
    @hookimpl
    def register_task_handlers(self, register: Callable[..., None]) -> None:
        register(_task("partial.task"))
        raise RuntimeError("database of handlers is down")


def test_discovery_hook_that_raises_is_a_recorded_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="taskrt.plugins"):
        runtime = _load(RaisesInDiscovery(), AlphaPlugin("alpha.one"))

    (failure,) = runtime.loaded.failures
    assert failure.name == "RaisesInDiscovery"
    assert "register_task_handlers" in failure.error
    assert "database of handlers is down" in failure.error
    # what it registered before raising is dropped with the rest
    assert set(runtime.registry.task_types) == {"alpha.one"}
    (record,) = [r for r in caplog.records if "RaisesInDiscovery" in r.getMessage()]
    assert record.exc_info is not None  # logged with its traceback


class RegistersGarbage:
    @hookimpl
    def register_task_handlers(self, register: Callable[..., None]) -> None:
        register(lambda payload: payload)  # a function, not a @taskrt.task


class RegistersBadStrategyName:
    @hookimpl
    def register_retry_strategies(self, register: Callable[..., None]) -> None:
        register("no spaces allowed", lambda: None)


@pytest.mark.parametrize(
    ("plugin", "needle"),
    [(RegistersGarbage(), "TaskType"), (RegistersBadStrategyName(), "no spaces allowed")],
)
def test_register_validates_what_it_is_given(plugin: object, needle: str) -> None:
    runtime = _load(plugin, AlphaPlugin("alpha.one"))

    (failure,) = runtime.loaded.failures
    assert needle in failure.error
    assert set(runtime.registry.task_types) == {"alpha.one"}


# --- plugins_modules ------------------------------------------------------------------------


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for throwaway plugin modules, forgotten again afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if (getattr(sys.modules[name], "__file__", None) or "").startswith(str(tmp_path)):
            del sys.modules[name]


def _write_module(folder: Path, source: str) -> str:
    name = f"plugin_mod_{uuid.uuid4().hex[:10]}"
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    return name


GOOD_MODULE = """
    import taskrt

    @taskrt.task("app.local")
    def local(payload):
        return payload

    @taskrt.hookimpl
    def register_task_handlers(register):
        register(local)
"""


def test_plugins_modules_loads_application_modules(module_dir: Path) -> None:
    good = _write_module(module_dir, GOOD_MODULE)

    runtime = _load(plugins_modules=[good])

    assert set(runtime.registry.task_types) == {"app.local"}
    origin = runtime.registry.origin("task", "app.local")
    assert origin is not None
    assert (origin.name, origin.module, origin.distribution) == (good, good, None)


def test_plugins_modules_from_the_environment(
    module_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    good = _write_module(module_dir, GOOD_MODULE)
    monkeypatch.setenv("TASKRT_PLUGINS_MODULES", f" {good} ")

    runtime = Runtime.load(taskrt.load_settings(), entry_points=False)

    assert "app.local" in runtime.registry.task_types


def test_module_that_raises_on_import_is_a_recorded_failure_and_others_load(
    module_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = _write_module(module_dir, 'raise ImportError("needs libfrobnicate >= 2")\n')
    good = _write_module(module_dir, GOOD_MODULE)

    with caplog.at_level(logging.ERROR, logger="taskrt.plugins"):
        runtime = _load(plugins_modules=[bad, good])

    (failure,) = runtime.loaded.failures
    assert failure.name == bad
    assert failure.distribution is None
    assert failure.error == "ImportError: needs libfrobnicate >= 2"
    assert set(runtime.registry.task_types) == {"app.local"}
    (record,) = [r for r in caplog.records if bad in r.getMessage()]
    message = record.getMessage()
    assert "failed to load" in message
    assert "needs libfrobnicate >= 2" in message
    assert "continues without it" in message
    assert record.exc_info is not None


def test_module_that_does_not_exist_is_a_recorded_failure() -> None:
    missing = f"no_such_plugin_module_{uuid.uuid4().hex[:8]}"

    runtime = _load(plugins_modules=[missing])

    (failure,) = runtime.loaded.failures
    assert failure.name == missing
    assert failure.error.startswith("ModuleNotFoundError")


# --- observers ------------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @hookimpl
    def after_enqueue(self, task: Any, created: bool) -> None:
        self.calls.append(("after_enqueue", {"task": task, "created": created}))

    @hookimpl
    def after_execute(self, outcome: Any) -> None:  # declares only one of (ctx, outcome)
        self.calls.append(("after_execute", {"outcome": outcome}))


class SecondRecorder(Recorder):
    pass


class Exploding:
    @hookimpl
    def after_enqueue(self, task: Any) -> None:
        raise ValueError(f"observer blew up on {task}")


def test_a_raising_observer_is_logged_counted_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    first, second = Recorder(), SecondRecorder()
    runtime = _load(first, Exploding(), second)

    with caplog.at_level(logging.ERROR, logger="taskrt.plugins"):
        runtime.observers.notify("after_enqueue", task="task-1", created=True)
        runtime.observers.notify("after_enqueue", task="task-2", created=False)

    expected = [
        ("after_enqueue", {"task": "task-1", "created": True}),
        ("after_enqueue", {"task": "task-2", "created": False}),
    ]
    assert first.calls == expected
    assert second.calls == expected
    assert runtime.observers.errors == {"Exploding.after_enqueue": 2}
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(messages) == 2
    assert all("'Exploding'" in m and "after_enqueue" in m for m in messages)
    assert "Traceback" in messages[0]
    assert "observer blew up on task-1" in messages[0]


def test_observers_receive_only_the_arguments_they_declare() -> None:
    recorder = Recorder()
    runtime = _load(recorder)

    runtime.observers.notify("after_execute", ctx="the-context", outcome="the-outcome")

    assert recorder.calls == [("after_execute", {"outcome": "the-outcome"})]
    assert runtime.observers.errors == {}


def test_observers_has_tells_whether_anyone_listens() -> None:
    runtime = _load(Recorder())

    assert runtime.observers.has("after_enqueue")
    assert not runtime.observers.has("on_dead_letter")


def test_observers_can_be_built_on_any_plugin_manager() -> None:
    recorder = Recorder()
    observers = Observers(_load(recorder).plugin_manager)

    observers.notify("after_enqueue", task="t", created=True)

    assert recorder.calls == [("after_enqueue", {"task": "t", "created": True})]


# --- commands -------------------------------------------------------------------------------


class AddsCommand:
    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command("hello")
        def hello() -> None:
            """Say hello."""


class BreaksCommands:
    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        raise RuntimeError("no commands today")


def test_plugins_add_commands_and_a_failing_one_breaks_nothing() -> None:
    group = click.Group("taskrt")
    runtime = _load(BreaksCommands(), AddsCommand())

    runtime.add_commands(group)

    assert "hello" in group.commands
    assert runtime.observers.errors == {"BreaksCommands.register_commands": 1}


# --- tracing --------------------------------------------------------------------------------


def _trace_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "taskrt.plugins.trace"]


def test_trace_logs_observer_hook_calls(caplog: pytest.LogCaptureFixture) -> None:
    runtime = _load(Recorder(), plugins_trace=True)

    with caplog.at_level(logging.INFO, logger="taskrt.plugins.trace"):
        runtime.observers.notify("after_enqueue", task="task-1", created=True)

    (message,) = [m for m in _trace_messages(caplog) if "after_enqueue" in m]
    assert "Recorder" in message
    assert "task-1" in message  # with its arguments


def test_trace_logs_discovery_hook_calls(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="taskrt.plugins.trace"):
        _load(AlphaPlugin("alpha.one"), plugins_trace=True)

    messages = _trace_messages(caplog)
    assert any("register_task_handlers" in m and "AlphaPlugin" in m for m in messages)


def test_no_trace_without_the_setting(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        runtime = _load(AlphaPlugin("alpha.one"), Recorder())
        runtime.observers.notify("after_enqueue", task="task-1", created=True)

    assert _trace_messages(caplog) == []
