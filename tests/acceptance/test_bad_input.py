"""Bad input is refused with a clear message and stores nothing; garbage pushed straight into
Redis is dropped and logged, never executed, and the worker goes on (issue 3, item 10)."""

from __future__ import annotations

import builtins
import json
import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from taskrt.client import Client
from taskrt.exceptions import ValidationError
from taskrt.queue.keyspace import Keyspace
from tests.acceptance.conftest import WorkerFactory
from tests.acceptance.helpers import redis_list, redis_zset, wait_status
from tests.support.db import Db
from tests.support.procs import run_cli, wait_for

pytestmark = pytest.mark.services


def _nothing_stored(db: Db, rds: redis.Redis, prefix: str) -> None:
    for table in ("tasks", "task_runs", "outbox", "audit_log"):
        assert db.scalar(f"SELECT count(*) FROM {table}") == 0, table
    assert list(rds.scan_iter(match=f"{prefix}*")) == []


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["enqueue", "no.such.task"], ["unknown task 'no.such.task'", "example.echo"]),
        (["enqueue", "example.word_count", "--payload", "{}"], ["payload.text", "required"]),
        (
            ["enqueue", "example.word_count", "--payload", '{"text": "a", "colour": 1}'],
            ["payload.colour"],
        ),
        (["enqueue", "example.sleep", "--payload", '{"ms": "x"}'], ["payload.ms", "integer"]),
        (["enqueue", "example.sleep", "--payload", '{"ms": -5}'], ["payload.ms"]),
        (["enqueue", "example.echo", "--queue", "bad queue!"], ["invalid queue name 'bad queue!'"]),
        (["enqueue", "example.echo", "--delay", "-1"], ["delay must be >= 0"]),
        (["enqueue", "example.echo", "--payload", "{not json"], ["--payload is not valid JSON"]),
    ],
    ids=[
        "unknown-task",
        "missing-field",
        "extra-field",
        "wrong-type",
        "out-of-range",
        "bad-queue",
        "negative-delay",
        "not-json",
    ],
)
def test_cli_refuses_bad_input_clearly_and_stores_nothing(
    args: list[str],
    expected: list[str],
    service_env: dict[str, str],
    db: Db,
    rds: redis.Redis,
    redis_prefix: str,
) -> None:
    proc = run_cli(args, service_env, check=False)
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert proc.stderr.startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in proc.stderr
    _nothing_stored(db, rds, redis_prefix)


def test_client_batch_with_one_bad_item_stores_nothing(
    client: Client, db: Db, rds: redis.Redis, redis_prefix: str
) -> None:
    with pytest.raises(ValidationError) as info:
        client.enqueue_many(
            [
                {"name": "example.echo", "payload": 1},
                {"name": "example.sleep", "payload": {"ms": "x"}},
                {"name": "example.echo", "queue": "bad queue!"},
                {"name": "example.echo", "delay": -0.5},
            ]
        )
    message = str(info.value)
    assert "nothing stored" in message
    assert "1.payload.ms" in message
    assert "2.queue" in message
    assert "3.delay" in message
    _nothing_stored(db, rds, redis_prefix)


class _Trap:
    """Unpickling this creates a file: proof that somebody unpickled queue data."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (builtins.open, (str(self.path), "w"))


def test_garbage_in_the_queue_is_dropped_logged_and_never_executed(
    client: Client,
    db: Db,
    service_env: dict[str, str],
    spawn: WorkerFactory,
    rds: redis.Redis,
    keys: Keyspace,
    tmp_path: Path,
) -> None:
    k = keys.queue("default")
    trap = tmp_path / "unpickled"
    blob = pickle.dumps(_Trap(trap))
    unknown = str(uuid.uuid4())
    rds.rpush(k.ready, b"not-a-run-id", blob, unknown)
    rds.zadd(k.delayed, {b"\xff\xfedelayed garbage": 0})
    rds.sadd(keys.queues, "default")

    worker = spawn(service_env, "w1", "-c", "2")
    real = client.enqueue("example.echo", {"real": True})
    wait_status(db, real.id, "completed", timeout=30)

    def all_logged() -> bool:
        # the worker logs JSON lines: read their messages, where escapes are single again
        log = "\n".join(
            json.loads(line)["message"] if line.startswith("{") else line
            for line in worker.log().splitlines()
        )
        # garbage lines are rate-limited (one per queue and kind a minute): whichever garbage
        # entry came first is named, the others are dropped all the same
        garbage = ("not-a-run-id", "delayed garbage", "\\x80\\x04")
        return unknown in log and any(text in log for text in garbage)

    wait_for(all_logged, 10, message="every garbage entry logged")
    # nothing of it stays behind in any list, zset or hash of the queue
    wait_for(
        lambda: rds.zcard(k.inflight) == 0 and rds.hlen(k.leases) == 0,
        45,  # at the latest the expired lease (30 s) is reaped; usually at once
        message="the garbage released from inflight and leases",
    )
    assert redis_list(rds, k.ready) == []
    assert redis_zset(rds, k.delayed) == []
    assert not trap.exists()
    assert worker.log().count("that is not a run id") == 1  # three garbage entries, one line
    assert db.scalar("SELECT count(*) FROM task_runs") == 1
    assert db.scalar("SELECT count(*) FROM tasks") == 1

    # and the worker keeps going
    after = client.enqueue("example.echo", {"after": True})
    wait_status(db, after.id, "completed", timeout=30)
    assert worker.stop() == 0
