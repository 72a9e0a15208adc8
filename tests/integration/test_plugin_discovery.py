"""Plugin discovery through real entry points of pip-installed distributions.

Throwaway plugin distributions are built once per module and installed into temporary venvs
next to a wheel of taskrt; each test runs that venv's real ``taskrt plugins --json``. Nothing is
monkeypatched: what taskrt sees is what ``importlib.metadata`` finds in the venv.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.plugin_dists import PluginDist, Venv, build_taskrt_wheel, build_wheels, make_venv

ACME = PluginDist(
    distribution="acme-tasks",
    module="acme_tasks",
    entry_point="acme",
    version="1.2.3",
    source="""
        from pydantic import BaseModel

        import taskrt
        from taskrt.retry import DelayStrategy


        class ResizePayload(BaseModel):
            url: str


        @taskrt.task("acme.resize", payload=ResizePayload, queue="images")
        def resize(payload, ctx):
            return payload.url


        @taskrt.task("acme.notify")
        async def notify(payload):
            return None


        class Backoff(BaseModel, DelayStrategy):
            seconds: float = 1.0

            def delay(self, retries_made):
                return self.seconds


        @taskrt.hookimpl
        def register_task_handlers(register):
            register(resize)
            register(notify)


        @taskrt.hookimpl
        def register_retry_strategies(register):
            register("acme.backoff", Backoff)
    """,
)

BETA = PluginDist(
    distribution="beta-tools",
    module="beta_tools",
    entry_point="beta",
    version="0.3.0",
    source="""
        import taskrt


        @taskrt.task("beta.ping")
        def ping(payload):
            return "pong"


        @taskrt.hookimpl
        def register_task_handlers(register):
            register(ping)
    """,
)

# Registers a task name acme-tasks already registers.
CLASH = PluginDist(
    distribution="clash-tasks",
    module="clash_tasks",
    entry_point="clash",
    source="""
        import taskrt


        @taskrt.task("acme.resize")
        def resize(payload):
            return None


        @taskrt.hookimpl
        def register_task_handlers(register):
            register(resize)
    """,
)

# Registers a retry strategy name taskrt's built-in plugin already registers.
SHADOW = PluginDist(
    distribution="shadow-retry",
    module="shadow_retry",
    entry_point="shadow",
    source="""
        from pydantic import BaseModel

        import taskrt
        from taskrt.retry import DelayStrategy


        class Exponential(BaseModel, DelayStrategy):
            def delay(self, retries_made):
                return 0.0


        @taskrt.hookimpl
        def register_retry_strategies(register):
            register("exponential", Exponential)
    """,
)

# Its module fails to import.
BROKEN = PluginDist(
    distribution="broken-plugin",
    module="broken_plugin",
    entry_point="broken",
    source="""
        import taskrt_no_such_dependency_xyz  # noqa: F401

        import taskrt


        @taskrt.hookimpl
        def register_task_handlers(register):
            raise AssertionError("never reached")
    """,
)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Wheels of taskrt and of every throwaway plugin, built once for this module."""
    workdir = tmp_path_factory.mktemp("plugin-dists")
    built = build_wheels([ACME, BETA, CLASH, SHADOW, BROKEN], workdir)
    built["taskrt"] = build_taskrt_wheel(workdir)
    return built


def _venv(
    tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path], *dists: PluginDist
) -> Venv:
    path = tmp_path_factory.mktemp("venv") / "venv"
    return make_venv(path, [wheels["taskrt"], *(wheels[d.distribution] for d in dists)])


@pytest.fixture(scope="module")
def good_venv(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Venv:
    """taskrt, acme-tasks and beta-tools."""
    return _venv(tmp_path_factory, wheels, ACME, BETA)


@pytest.fixture(scope="module")
def clash_venv(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Venv:
    """taskrt, acme-tasks, clash-tasks (same task name) and shadow-retry (same strategy name)."""
    return _venv(tmp_path_factory, wheels, ACME, CLASH, SHADOW)


@pytest.fixture(scope="module")
def broken_venv(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Venv:
    """taskrt, acme-tasks, beta-tools and broken-plugin (fails to import)."""
    return _venv(tmp_path_factory, wheels, ACME, BETA, BROKEN)


def _by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in entries}


def _plugin_names(data: dict[str, Any]) -> set[str]:
    return {plugin["name"] for plugin in data["plugins"]}


# --- discovery -------------------------------------------------------------------------------


def test_installed_plugin_task_types_appear_with_their_distribution(good_venv: Venv) -> None:
    data = good_venv.plugins_json()

    tasks = _by_name(data["task_types"])
    assert tasks["acme.resize"]["distribution"] == "acme-tasks"
    assert tasks["acme.resize"]["version"] == "1.2.3"
    assert tasks["acme.resize"]["plugin"] == "acme"
    assert tasks["acme.resize"]["queue"] == "images"
    assert tasks["acme.resize"]["payload_model"] == "ResizePayload"
    assert tasks["acme.resize"]["async"] is False
    assert tasks["acme.notify"]["async"] is True
    assert tasks["acme.notify"]["distribution"] == "acme-tasks"
    assert tasks["beta.ping"]["distribution"] == "beta-tools"
    assert tasks["beta.ping"]["version"] == "0.3.0"
    assert data["failures"] == []


def test_installed_plugin_retry_strategy_appears_next_to_the_builtin_ones(good_venv: Venv) -> None:
    data = good_venv.plugins_json()

    strategies = _by_name(data["retry_strategies"])
    assert strategies["acme.backoff"]["distribution"] == "acme-tasks"
    for builtin in ("exponential", "fixed", "linear", "none"):
        assert strategies[builtin]["distribution"] == "taskrt", builtin


def test_plugins_section_lists_each_plugin_with_what_it_registered(good_venv: Venv) -> None:
    plugins = _by_name(good_venv.plugins_json()["plugins"])

    acme = plugins["acme"]
    assert acme["distribution"] == "acme-tasks"
    assert acme["module"] == "acme_tasks"
    assert sorted(acme["task_types"]) == ["acme.notify", "acme.resize"]
    assert acme["retry_strategies"] == ["acme.backoff"]
    assert set(acme["hooks"]) == {"register_task_handlers", "register_retry_strategies"}
    assert plugins["beta"]["task_types"] == ["beta.ping"]


def test_the_venv_runs_the_installed_taskrt_wheel(good_venv: Venv) -> None:
    """Guards the harness: the console script and taskrt come from the temporary venv."""
    result = good_venv.run_taskrt("--version")
    assert result.returncode == 0, result.stderr
    code = "import taskrt, taskrt_plugins; print(taskrt.__file__); print(taskrt_plugins.__file__)"
    out = subprocess.run(
        [str(good_venv.python), "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert all(line.startswith(str(good_venv.path)) for line in out.split()), out


# --- allow list ------------------------------------------------------------------------------


@pytest.mark.parametrize("selector", ["acme", "acme-tasks", "ACME_Tasks"])
def test_allow_list_loads_only_the_named_plugin(good_venv: Venv, selector: str) -> None:
    """By entry-point name or distribution name (normalized like pip does)."""
    data = good_venv.plugins_json({"TASKRT_PLUGINS_LOAD": selector})

    assert _plugin_names(data) == {"acme"}
    assert {t["name"] for t in data["task_types"]} == {"acme.resize", "acme.notify"}
    assert "beta" in data["skipped"]
    # the built-in strategies are a plugin like any other: not allowed, not loaded
    assert "retry_strategies" in data["skipped"]
    assert {s["name"] for s in data["retry_strategies"]} == {"acme.backoff"}


def test_allow_list_takes_several_comma_separated_names(good_venv: Venv) -> None:
    data = good_venv.plugins_json({"TASKRT_PLUGINS_LOAD": "beta-tools, taskrt"})

    # "taskrt" selects every built-in plugin of the taskrt distribution
    assert _plugin_names(data) == {"beta", "retry_strategies", "auth_apikey", "auth_jwt"}
    assert "acme.resize" not in {t["name"] for t in data["task_types"]}


# --- block list ------------------------------------------------------------------------------


@pytest.mark.parametrize("selector", ["beta", "beta-tools", "beta_tools"])
def test_block_list_leaves_the_named_plugin_out(good_venv: Venv, selector: str) -> None:
    data = good_venv.plugins_json({"TASKRT_PLUGINS_DISABLE": selector})

    names = _plugin_names(data)
    assert "beta" not in names
    assert {"acme", "retry_strategies"} <= names
    assert "beta.ping" not in {t["name"] for t in data["task_types"]}
    assert "acme.resize" in {t["name"] for t in data["task_types"]}
    assert "beta" in data["skipped"]


def test_block_list_wins_over_allow_list(good_venv: Venv) -> None:
    data = good_venv.plugins_json(
        {"TASKRT_PLUGINS_LOAD": "acme,beta", "TASKRT_PLUGINS_DISABLE": "beta-tools"}
    )

    assert _plugin_names(data) == {"acme"}


# --- duplicates ------------------------------------------------------------------------------


def test_two_distributions_registering_one_task_name_is_an_error_naming_both(
    clash_venv: Venv,
) -> None:
    result = clash_venv.run_taskrt(
        "plugins", "--json", env={"TASKRT_PLUGINS_DISABLE": "shadow-retry"}
    )

    assert result.returncode != 0
    assert "acme.resize" in result.stderr
    assert "acme-tasks" in result.stderr
    assert "clash-tasks" in result.stderr
    assert "Traceback" not in result.stderr  # a message for a person, not a crash
    assert result.stdout.strip() == ""


def test_a_strategy_name_taken_by_a_builtin_is_an_error_naming_both(clash_venv: Venv) -> None:
    result = clash_venv.run_taskrt(
        "plugins", "--json", env={"TASKRT_PLUGINS_DISABLE": "clash-tasks"}
    )

    assert result.returncode != 0
    assert "'exponential'" in result.stderr
    assert "distribution taskrt " in result.stderr
    assert "shadow-retry" in result.stderr


def test_blocking_one_of_two_clashing_distributions_resolves_the_clash(clash_venv: Venv) -> None:
    """The error message tells the user to do this; it must work."""
    data = clash_venv.plugins_json({"TASKRT_PLUGINS_DISABLE": "clash-tasks,shadow"})

    tasks = _by_name(data["task_types"])
    assert tasks["acme.resize"]["distribution"] == "acme-tasks"
    assert _by_name(data["retry_strategies"])["exponential"]["distribution"] == "taskrt"


# --- a plugin that fails to import -----------------------------------------------------------


def test_a_plugin_that_fails_to_import_is_reported_and_the_others_load(broken_venv: Venv) -> None:
    result = broken_venv.run_taskrt("plugins", "--json")

    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"acme", "beta", "retry_strategies"} <= _plugin_names(data)
    assert "broken" not in _plugin_names(data)
    assert {"acme.resize", "acme.notify", "beta.ping"} <= {t["name"] for t in data["task_types"]}

    (failure,) = [f for f in data["failures"] if f["plugin"] == "broken"]
    assert failure["distribution"] == "broken-plugin"
    assert failure["version"] == "1.0.0"
    assert "taskrt_no_such_dependency_xyz" in failure["error"]
    assert "ModuleNotFoundError" in failure["error"]

    # and a person running the command is told, with the distribution named
    assert "broken-plugin" in result.stderr
    assert "taskrt_no_such_dependency_xyz" in result.stderr


def test_a_blocked_broken_plugin_is_not_imported_at_all(broken_venv: Venv) -> None:
    data = broken_venv.plugins_json({"TASKRT_PLUGINS_DISABLE": "broken-plugin"})

    assert data["failures"] == []
    assert "broken" in data["skipped"]
