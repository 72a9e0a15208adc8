"""Programs reach tasks and schedules only through a tenant-bound scope.

The HTTP API, the command line and the client call ``service.scoped(tenant)`` (a
:class:`~taskrt.service.TenantTasks`) and ``schedules.scoped(tenant)``; a route or command that
called the unscoped service, or the store, directly could read or change another tenant's
data. This test reads their source and fails on any such call it does not know about: a new
one must be scoped, or (if it touches no tenant's data, or takes its tenant explicitly) added
to the allowlist below with the reason.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

CORE = Path(__file__).resolve().parents[2] / "core" / "taskrt"

# files another stage owns (the tenants admin is operator-only and tenant-aware by design; the
# worker command serves the tenants it is given)
NOT_PROGRAM_SCOPE = {"cli/tenants_cmd.py", "cli/worker_cmd.py", "api/routes_tenants.py"}


def _sources(*folders: str) -> dict[str, str]:
    out = {}
    for folder in folders:
        for path in sorted((CORE / folder).glob("*.py")):
            name = f"{folder}/{path.name}"
            if name not in NOT_PROGRAM_SCOPE:
                out[name] = path.read_text()
    return out


# ApiState.service is the unscoped service: only deps.py touches it, to build scopes
API_SERVICE = re.compile(r"(?:state|state_of\(request\))\.service\.(\w+)")
# App.service / App.schedules are unscoped in the command line (CliState.service is a scope)
APP_SERVICE = re.compile(r"app\.(service|schedules)\.(\w+)")
STORE = re.compile(r"\b(?:state|app|service|self|wired)\.store\b")
BUILT = re.compile(r"\b(TaskService|ScheduleService)\(")

ALLOWED_APP_CALLS = {
    ("service", "scoped"),
    ("service", "check_tenant"),
    ("schedules", "scoped"),
    # the scheduler's queue-depth gauge covers every tenant's queues (labelled by tenant)
    ("service", "queues"),
}

# (file, how many lines name a store): each reads no tenant's data or passes its tenant itself
ALLOWED_STORE_USES = {
    "api/app.py": 1,  # the auth chain (API keys are looked up by prefix, across tenants)
    "cli/api_cmd.py": 1,  # the same, for `taskrt api`
    "api/deps.py": 1,  # ApiState.store, for the two uses below
    "api/routes_admin.py": 2,  # the readiness probe's ping; the prune (tenant in its request)
    "cli/dev_cmd.py": 2,  # the session's API key, created and revoked in the chosen tenant
    "cli/demo_cmd.py": 1,  # migrating the embedded SQLite schema
    "cli/prune_cmd.py": 1,  # the prune (tenant in its request)
}


def test_routes_reach_the_service_only_to_build_scopes() -> None:
    for name, text in _sources("api").items():
        calls = set(API_SERVICE.findall(text))
        if name == "api/deps.py":
            assert calls <= {"scoped", "check_tenant", "store"}, calls
        else:
            assert not calls, f"{name} calls the unscoped service: {calls}"


def test_commands_reach_the_app_services_only_to_build_scopes() -> None:
    for name, text in _sources("cli").items():
        calls = set(APP_SERVICE.findall(text))
        assert calls <= ALLOWED_APP_CALLS, f"{name}: {calls - ALLOWED_APP_CALLS}"
    queues = [n for n, t in _sources("cli").items() if "app.service.queues" in t]
    assert queues == ["cli/schedules_cmd.py"]
    assert "partial(app.service.queues, tenant=None)" in _sources("cli")["cli/schedules_cmd.py"]


def test_programs_name_the_store_only_where_allowed() -> None:
    uses = Counter()
    for name, text in {**_sources("api"), **_sources("cli")}.items():
        count = sum(1 for line in text.splitlines() if STORE.search(line))
        if count:
            uses[name] = count
    assert dict(uses) == ALLOWED_STORE_USES


def test_programs_build_no_unscoped_service() -> None:
    for name, text in {**_sources("api"), **_sources("cli")}.items():
        for match in BUILT.finditer(text):
            line = text[match.start() : text.index("\n", match.start())]
            assert name == "api/deps.py", f"{name} builds a {match.group(1)}: {line}"
            assert ".scoped(" in line


def test_the_client_calls_only_its_scope() -> None:
    text = (CORE / "client.py").read_text()
    assert set(APP_SERVICE.findall(text)) == {("service", "scoped")}
    assert not STORE.search(text)
