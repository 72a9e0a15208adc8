"""The auth-backend guide's plugin works in a real ``taskrt api``, as the guide says.

``docs/how-to/auth-backends.md`` marks its plugin module and its tests with
``<!-- example: file PATH -->``; this test writes them out of the markdown, runs the guide's own
tests, then loads the module into ``taskrt api`` (``TASKRT_PLUGINS_MODULES``) and checks what the
guide promises: a missing or weak secret stops the API with one line naming ``ACME_AUTH_SECRET``
(and never printing the secret); a request the gateway signed gets in with its role, a forged
one gets ``401``, a reader gets ``403`` on an admin route, and API keys still work beside it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.acceptance.tutorial_steps import apply_file_step, parse_steps
from tests.api.support import ApiProcess
from tests.support.procs import REPO_ROOT, bare_env, run_cli

GUIDE = REPO_ROOT / "docs" / "how-to" / "auth-backends.md"
SECRET = "a-secret-the-gateway-and-taskrt-share"


@pytest.fixture
def guide_plugin(tmp_path: Path) -> Path:
    """The guide's files, written under ``tmp_path``; returns the folder to put on the path."""
    steps = parse_steps(GUIDE.read_text(encoding="utf-8"), tag="example")
    assert {s.path for s in steps} == {"src/acme_auth/plugin.py", "tests/test_acme_auth.py"}
    for step in steps:
        assert step.kind == "file", f"line {step.line}: unexpected {step.kind} step"
        apply_file_step(step, tmp_path)
    (tmp_path / "src" / "acme_auth" / "__init__.py").touch()
    return tmp_path


def api_env(project: Path, **extra: str) -> dict[str, str]:
    """A fresh shell's environment with the guide's plugin loaded and enabled."""
    return {
        **bare_env(),
        "PYTHONPATH": str(project / "src"),
        "TASKRT_DATABASE_URL": f"sqlite:///{project / 'taskrt.db'}",
        "TASKRT_PLUGINS_MODULES": "acme_auth.plugin",
        "TASKRT_AUTH_BACKENDS": "acme,apikey",
        **extra,
    }


def signed_headers(user: str, role: str, secret: str = SECRET) -> dict[str, str]:
    """The headers the guide's gateway adds, signed with the guide's own ``signature``."""
    from acme_auth.plugin import signature  # type: ignore[import-not-found]  # written by the test

    expires = str(int(time.time()) + 60)
    return {
        "X-Acme-User": user,
        "X-Acme-Role": role,
        "X-Acme-Expires": expires,
        "X-Acme-Signature": signature(secret, user, role, expires),
    }


def test_the_guides_own_tests_pass(guide_plugin: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=guide_plugin,
        env={**bare_env(), "PYTHONPATH": str(guide_plugin / "src")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout, result.stdout


@pytest.mark.parametrize(
    ("secret", "expected"),
    [
        (None, "ACME_AUTH_SECRET: Field required"),
        ("short-secret", "ACME_AUTH_SECRET: Value error, the secret must be 32 characters or more"),
    ],
    ids=["missing", "too-short"],
)
def test_a_bad_secret_stops_the_api_with_one_line(
    guide_plugin: Path, secret: str | None, expected: str
) -> None:
    env = api_env(guide_plugin, **({"ACME_AUTH_SECRET": secret} if secret else {}))
    run_cli(["db", "upgrade"], env)
    result = run_cli(["api", "--port", "1"], env, check=False, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [f"Error: the acme auth backend is not configured: {expected}"], result.stderr
    if secret:
        assert secret not in result.stderr


def test_the_guides_backend_decides_who_calls_a_real_api(
    guide_plugin: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(guide_plugin / "src"))
    env = api_env(guide_plugin, ACME_AUTH_SECRET=SECRET)
    run_cli(["db", "upgrade"], env)
    api_key = run_cli(["apikey", "create", "--name", "ci", "--role", "reader"], env).stdout.strip()
    api = ApiProcess(env, tmp_path / "api.log").start()
    try:
        with api.client(**signed_headers("alice", "reader")) as alice:
            assert alice.get("/api/v1/queues").status_code == 200
            assert alice.get("/api/v1/audit").status_code == 403  # a reader, not an admin
        with api.client(**signed_headers("root", "admin")) as admin:
            assert admin.get("/api/v1/audit").status_code == 200
        forged = signed_headers("mallory", "admin", secret="not-the-secret-" * 3)
        with api.client(**forged) as mallory:
            assert mallory.get("/api/v1/queues").status_code == 401
        with api.client(**{"X-API-Key": api_key}) as ci:  # "not mine": apikey decides
            assert ci.get("/api/v1/queues").status_code == 200
    finally:
        api.stop()
    assert "bad gateway signature for 'mallory'" in api.log()  # the reason, for the operator
