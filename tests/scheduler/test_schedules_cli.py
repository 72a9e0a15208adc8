"""The ``taskrt schedules`` commands, run for real: bad input is refused and stores nothing."""

from __future__ import annotations

import json

import pytest

from tests.support.db import Db
from tests.support.procs import run_cli

pytestmark = pytest.mark.services


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--cron", "61 * * * *"], "invalid cron expression '61 * * * *'"),
        (["--cron", "every minute"], "give 5 fields"),
        (["--cron", "* * * * *", "--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["--cron", "* * * * *", "--payload", '{"ms": "x"}'], "payload.ms"),
    ],
)
def test_bad_schedules_are_refused_with_the_reason_and_nothing_is_stored(
    service_env: dict[str, str], db: Db, options: list[str], message: str
) -> None:
    proc = run_cli(
        ["schedules", "add", "--task", "example.sleep", *options], service_env, check=False
    )
    assert proc.returncode != 0
    assert message in proc.stderr
    assert db.scalar("SELECT count(*) FROM schedules") == 0
    assert db.scalar("SELECT count(*) FROM tasks") == 0


def test_add_show_next_disable_enable_delete(service_env: dict[str, str], db: Db) -> None:
    schedule_id = run_cli(
        [
            "schedules",
            "add",
            "--cron",
            "30 2 * * *",
            "--timezone",
            "Europe/Berlin",
            "--task",
            "example.echo",
            "--payload",
            '{"n": 1}',
            "--misfire",
            "all",
        ],
        service_env,
    ).stdout.strip()
    shown = json.loads(run_cli(["schedules", "show", schedule_id, "--json"], service_env).stdout)
    assert shown["cron"] == "30 2 * * *"
    assert shown["misfire_policy"] == "all"
    upcoming = json.loads(
        run_cli(["schedules", "next", schedule_id, "--count", "3", "--json"], service_env).stdout
    )
    assert len(upcoming) == 3
    assert all(t["local"].split("T")[1].startswith(("02:30", "03:00")) for t in upcoming)
    run_cli(["schedules", "disable", schedule_id], service_env)
    assert db.scalar("SELECT enabled FROM schedules") is False
    run_cli(["schedules", "enable", schedule_id], service_env)
    assert db.scalar("SELECT enabled FROM schedules") is True
    run_cli(["schedules", "delete", schedule_id], service_env)
    assert db.scalar("SELECT count(*) FROM schedules") == 0
    actions = [row[0] for row in db.rows("SELECT action FROM audit_log ORDER BY id")]
    assert actions == [
        "schedule.create",
        "schedule.disable",
        "schedule.enable",
        "schedule.delete",
    ]
