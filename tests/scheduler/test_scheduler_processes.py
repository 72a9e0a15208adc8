"""Real ``taskrt scheduler`` processes on PostgreSQL: exactly-once slots under crashes, misfire
policies across a stop, and fire lag."""

from __future__ import annotations

import random
import signal
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from taskrt.scheduler.cron import CronSchedule
from tests.support.db import Db
from tests.support.procs import REPO_ROOT, TASKRT, run_cli, wait_for

pytestmark = pytest.mark.services


class SchedulerProcess:
    """A ``taskrt scheduler`` subprocess."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [TASKRT, "scheduler"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(15)


def add_schedule(env: dict[str, str], cron: str, misfire: str = "coalesce") -> uuid.UUID:
    out = run_cli(
        [
            "schedules",
            "add",
            "--cron",
            cron,
            "--task",
            "example.echo",
            "--payload",
            "{}",
            "--misfire",
            misfire,
        ],
        env,
    ).stdout
    return uuid.UUID(out.strip())


def fires(db: Db, schedule_id: uuid.UUID) -> list[tuple[object, object, float]]:
    rows = db.rows(
        "SELECT f.fire_at, f.task_id, extract(epoch FROM t.created_at - f.fire_at) "
        "FROM schedule_fires f JOIN tasks t ON t.id = f.task_id "
        "WHERE f.schedule_id = :s ORDER BY f.fire_at",
        s=schedule_id,
    )
    return [(r[0], r[1], float(r[2])) for r in rows]


def test_three_schedulers_killed_at_random_fire_every_slot_exactly_once(
    service_env: dict[str, str], db: Db, tmp_path: Path
) -> None:
    schedule_id = add_schedule(service_env, "* * * * * *")
    schedulers = [SchedulerProcess(service_env, tmp_path / f"s{n}.log") for n in range(3)]
    for s in schedulers:
        s.start()
    wait_for(lambda: fires(db, schedule_id), timeout=20, message="the schedulers up and firing")
    rng = random.Random(5)
    started_db = db.scalar("SELECT statement_timestamp()")
    deadline = time.monotonic() + 20
    kills = 0
    try:
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 1.2))
            victim = rng.choice(schedulers)
            victim.kill()  # at most one is down at a time: some scheduler is always running
            kills += 1
            time.sleep(rng.uniform(0.1, 0.8))
            victim.start()
        ended_db = db.scalar("SELECT statement_timestamp()")
    finally:
        for s in schedulers:
            s.stop()
    assert kills >= 10
    rows = fires(db, schedule_id)
    fire_times = [r[0] for r in rows]
    assert len(fire_times) == len(set(fire_times))  # one fire per slot
    tasks = db.scalar("SELECT count(*) FROM tasks WHERE trace_id = :t", t=f"schedule-{schedule_id}")
    assert tasks == len(rows)  # one task per fire
    cron = CronSchedule("* * * * * *", "UTC")
    # every slot of the window fired (a scheduler was always up); allow the edges a second
    expected = cron.slots_between(
        started_db + timedelta(seconds=2), ended_db - timedelta(seconds=2), 100
    )
    missing = sorted(set(expected) - set(fire_times))
    assert missing == [], [s.log.read_text()[-2000:] for s in schedulers]
    late = [(t, lag) for t, _, lag in rows if t >= started_db + timedelta(seconds=2) and lag >= 1.0]
    assert late == []  # fire lag under one second by the database clock


def test_misfire_policies_across_a_stopped_scheduler(
    service_env: dict[str, str], db: Db, tmp_path: Path
) -> None:
    env = dict(service_env, TASKRT_SCHEDULER_MISFIRE_GRACE="0.5")
    cron = "*/2 * * * * *"
    ids = {policy: add_schedule(env, cron, policy) for policy in ("skip", "coalesce", "all")}
    scheduler = SchedulerProcess(env, tmp_path / "s.log")
    scheduler.start()
    wait_for(lambda: all(fires(db, i) for i in ids.values()), timeout=20, message="first fires")
    scheduler.stop()
    stopped = db.scalar("SELECT statement_timestamp()")
    time.sleep(12.5)  # at least five slots pass with no scheduler
    restarted = db.scalar("SELECT statement_timestamp()")
    scheduler.start()
    wait_for(
        lambda: all(any(r[0] > restarted for r in fires(db, i)) for i in ids.values()),
        timeout=20,
        message="fires after the restart",
    )
    scheduler.stop()
    schedule = CronSchedule(cron, "UTC")
    missed_slots = schedule.slots_between(
        stopped + timedelta(seconds=1), restarted - timedelta(seconds=1), 100
    )
    assert len(missed_slots) >= 5
    fired_missed = {
        policy: [r[0] for r in fires(db, i) if r[0] in missed_slots] for policy, i in ids.items()
    }
    assert fired_missed["skip"] == []
    assert len(fired_missed["coalesce"]) == 1
    assert fired_missed["all"] == missed_slots


def test_schedule_changes_take_effect_without_a_restart(
    service_env: dict[str, str], db: Db, tmp_path: Path
) -> None:
    schedule_id = add_schedule(service_env, "* * * * * *")
    scheduler = SchedulerProcess(service_env, tmp_path / "s.log")
    scheduler.start()
    try:
        wait_for(lambda: len(fires(db, schedule_id)) >= 2, timeout=20)
        run_cli(["schedules", "disable", str(schedule_id)], service_env)
        time.sleep(0.5)  # one tick to see it
        count = len(fires(db, schedule_id))
        time.sleep(2.5)
        assert len(fires(db, schedule_id)) == count
        run_cli(["schedules", "enable", str(schedule_id)], service_env)
        wait_for(lambda: len(fires(db, schedule_id)) > count, timeout=10)
    finally:
        scheduler.stop()
