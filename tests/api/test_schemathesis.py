"""Schemathesis against a real ``taskrt api``: no 5xx and no answer that breaks the OpenAPI
document, with admin credentials, for every operation (bounded examples so CI stays fast)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.api.conftest import admin_key
from tests.api.support import ApiProcess
from tests.support.procs import run_cli

pytestmark = [pytest.mark.services, pytest.mark.slow]

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
    ]
)


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    api_process: Callable[..., ApiProcess], service_env: dict[str, str], tmp_path: Path
) -> None:
    key = admin_key(service_env)
    for payload in ('{"n": 1}', '"text"', "[1, 2]"):  # so the lists have tasks to show
        run_cli(["enqueue", "example.echo", "--payload", payload], service_env)
    for cron in ("*/5 * * * *", "30 2 * * *"):  # and the schedule list has schedules
        run_cli(["schedules", "add", "--cron", cron, "--task", "example.echo"], service_env)
    # generous limits: the run itself must not be throttled into 429s
    server = api_process(rate_limit_admin="100000/second", rate_limit_anonymous="100000/second")
    proc = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{server.url}/openapi.json",
            # both ways, or schemathesis fills the other security scheme with made-up keys
            "--header",
            f"Authorization: Bearer {key}",
            "--header",
            f"X-API-Key: {key}",
            "--checks",
            CHECKS,
            "--max-examples",
            "25",
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "20240601",
            # one worker: with several threads, schemathesis' coverage phase has hit an internal
            # error in CPython 3.11's ast module (not in the API)
            "--workers",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=tmp_path,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-8000:] + "\n--- server log ---\n" + server.log()[-4000:]
    assert "unhandled error" not in server.log()
