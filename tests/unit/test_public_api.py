"""The public API is ``taskrt.__all__``: every name in it resolves, nothing public is left out."""

from __future__ import annotations

import inspect
import types

import pluggy
import pytest

import taskrt

TYPING_HELPERS = {"annotations", "TYPE_CHECKING", "Any"}


def test_all_has_no_duplicates() -> None:
    assert len(taskrt.__all__) == len(set(taskrt.__all__))


@pytest.mark.parametrize("name", taskrt.__all__)
def test_every_public_name_resolves(name: str) -> None:
    value = getattr(taskrt, name)

    assert value is not None
    if inspect.isclass(value) or inspect.isfunction(value):
        assert value.__module__.startswith("taskrt"), f"{name} comes from {value.__module__}"
        assert inspect.getdoc(value), f"taskrt.{name} has no docstring"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}

    exec("from taskrt import *", namespace)

    assert set(namespace) - {"__builtins__"} == set(taskrt.__all__)


def test_nothing_public_is_left_out_of_all() -> None:
    """Names defined by taskrt and visible on the package are either in __all__ or private."""
    missing = [
        name
        for name, value in vars(taskrt).items()
        if not name.startswith("_")
        and name not in TYPING_HELPERS
        and not isinstance(value, types.ModuleType)
        and name not in taskrt.__all__
    ]

    assert missing == []


def test_the_names_a_plugin_needs() -> None:
    from taskrt import Retry, TaskContext, hookimpl, task

    assert isinstance(hookimpl, pluggy.HookimplMarker)
    assert hookimpl.project_name == "taskrt"
    assert callable(task)
    assert TaskContext is taskrt.context.TaskContext
    assert Retry is taskrt.exceptions.Retry


def test_hookimpl_marks_for_the_taskrt_project() -> None:
    """A function marked with ``taskrt.hookimpl`` is seen by a taskrt plugin manager."""

    @taskrt.hookimpl
    def register_task_handlers(register: object) -> None:
        """Nothing to register."""

    assert hasattr(register_task_handlers, "taskrt_impl")


def test_version_is_a_version_string() -> None:
    from importlib.metadata import version

    assert taskrt.__version__ == version("taskrt")
    assert taskrt.__version__.count(".") >= 2


def test_lazy_names_are_imported_on_first_use() -> None:
    runtime_class = taskrt.Runtime

    from taskrt.runtime import Runtime

    assert runtime_class is Runtime


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        taskrt.no_such_name  # noqa: B018 - the attribute access is the test
    assert not hasattr(taskrt, "Worker_that_does_not_exist")
