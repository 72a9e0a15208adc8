"""Fair dequeue across tenants with real worker processes (issue 16).

Tenant A has 5,000 queued tasks; two ``--tenants '*' -c 4 --prefetch 0`` workers drain them;
while they do, tenant B enqueues 50 tasks, one every 40 ms. The bound asserted: for every B
task, the A tasks started between its enqueue and its start number at most
``N x (C + P + 2L)`` = 2 x (4 + 0 + 8) = 24 (N workers, C concurrency, P prefetch, L the fetch
limit, at most C; the second L: a worker that skipped B's empty queue may fetch once more before
the wake-up naming it arrives). Without fairness it is in the thousands (B's tasks wait for
A's backlog).

The handler is ``example.echo`` (it returns at once), so A's backlog drains fast and the test
stays well under a minute; the bound counts tasks, not time, so it is the same with a slower
handler. Tasks are enqueued through the service layer with ``tenant=``. Nothing here is timed:
the assertions count tasks (timings belong to the benchmark).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from taskrt.app import App
from taskrt.enqueue import EnqueueSpec
from taskrt.settings import load_settings
from tests.support.db import Db
from tests.support.procs import WorkerProcess, service_env, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

N, C, P = 2, 4, 0
L = C  # the fetch limit: at most the free slots, so at most C
BOUND = N * (C + P + 2 * L)  # one more fetch each: the wake-up clearing an empty hint lags
A_TASKS = 5_000
B_TASKS = 50


@pytest.fixture(params=["redis", "postgresql"])
def env(request: pytest.FixtureRequest, pg_url: str, redis_url: str, redis_prefix: str) -> Any:
    redis = request.param == "redis"
    return service_env(
        pg_url,
        redis_url=redis_url if redis else None,
        redis_prefix=redis_prefix if redis else None,
        maintenance_interval=0.2,
        heartbeat_interval=0.5,
        log_level="INFO",
    )


@pytest.fixture
def app(env: dict[str, str]) -> Iterator[App]:
    redis_url = env.get("TASKRT_REDIS_URL")
    settings = load_settings(
        database_url=env["TASKRT_DATABASE_URL"],
        redis_url=redis_url,
        redis_prefix=env.get("TASKRT_REDIS_PREFIX", ""),
        plugins_modules=["tests.support.testkit"],
    )
    handle = App.open(settings)
    yield handle
    handle.close()


def enqueue(app: App, tenant: str, n: int, *, batch: int = 500) -> None:
    specs = [EnqueueSpec(name="example.echo", payload={"i": i}) for i in range(n)]
    for start in range(0, n, batch):
        app.service.enqueue_many(specs[start : start + batch], tenant=tenant)


def workers(env: dict[str, str], tmp_path: Path, *args: str) -> list[WorkerProcess]:
    return [
        WorkerProcess(
            env, tmp_path / f"w{n}.log", "--tenants", "*", "-c", str(C), "--prefetch", str(P), *args
        ).start()
        for n in range(N)
    ]


def stop(procs: list[WorkerProcess]) -> None:
    codes = [w.stop() for w in procs]
    assert codes == [0] * len(procs), [w.log()[-3000:] for w in procs]


def started(db: Db, tenant: str) -> list[Any]:
    return [
        row[0]
        for row in db.rows(
            "SELECT started_at FROM task_runs WHERE tenant = :t AND started_at IS NOT NULL "
            "ORDER BY started_at",
            t=tenant,
        )
    ]


def test_a_deep_backlog_cannot_starve_a_tenant_with_a_few_tasks(
    app: App, db: Db, env: dict[str, str], tmp_path: Path
) -> None:
    app.store.create_tenant("a")
    app.store.create_tenant("b")
    enqueue(app, "a", A_TASKS)
    procs = workers(env, tmp_path)
    try:
        wait_for(
            lambda: (
                db.scalar("SELECT count(*) FROM tasks WHERE tenant='a' AND status='completed'")
                >= 200
            ),
            timeout=60,
            message="A's backlog draining",
        )
        visible: list[datetime] = []  # when each B task's enqueue returned: dispatched, visible
        for _ in range(B_TASKS):
            enqueue(app, "b", 1)
            visible.append(datetime.now(UTC))
            time.sleep(0.04)
        wait_for(
            lambda: (
                db.scalar("SELECT count(*) FROM tasks WHERE tenant='b' AND status='completed'")
                == B_TASKS
            ),
            timeout=30,
            message="B's tasks done",
        )
        still_queued = db.scalar(
            "SELECT count(*) FROM tasks WHERE tenant='a' AND status <> 'completed'"
        )
    finally:
        stop(procs)
    assert still_queued > 0, "A's backlog ran out before B was done: the test proves nothing"

    # a B task's enqueue: when the call returned (committed and in its queue, where workers
    # can see it); database and test share this machine's clock
    b_runs: list[tuple[datetime, datetime]] = [
        (row[0], row[1])
        for row in db.rows(
            "SELECT t.created_at, r.started_at FROM tasks t JOIN task_runs r ON r.task_id = t.id "
            "WHERE t.tenant = 'b' ORDER BY t.created_at"
        )
    ]
    assert len(b_runs) == B_TASKS
    a_starts = started(db, "a")
    overtaken = [
        bisect.bisect_right(a_starts, start) - bisect.bisect_right(a_starts, enqueued)
        for enqueued, (_created, start) in zip(visible, b_runs, strict=True)
    ]
    # the bound: at most N x (C + P + L) of A's tasks start while a B task waits
    assert max(overtaken) <= BOUND, sorted(overtaken)

    # and A is not starved in turn: while B's tasks came and went, A kept starting tasks (its
    # equal weight gives it every slot B does not use; counted, not timed)
    first_b, last_b = b_runs[0][0], max(start for _e, start in b_runs)
    during = sum(1 for s in a_starts if first_b <= s <= last_b)
    assert during >= B_TASKS, (during, B_TASKS)


def test_weights_share_the_workers_between_busy_tenants(
    app: App, db: Db, env: dict[str, str], tmp_path: Path
) -> None:
    app.store.create_tenant("a", weight=3)
    app.store.create_tenant("b", weight=1)
    enqueue(app, "a", 1_500)
    enqueue(app, "b", 1_500)
    procs = workers(env, tmp_path)
    try:
        wait_for(
            lambda: db.scalar("SELECT count(*) FROM tasks WHERE status='completed'") >= 1_200,
            timeout=60,
            message="1,200 tasks done",
        )
    finally:
        stop(procs)
    firsts = db.rows(
        "SELECT tenant FROM task_runs WHERE started_at IS NOT NULL ORDER BY started_at LIMIT 1000"
    )
    share = sum(1 for (tenant,) in firsts if tenant == "a") / len(firsts)
    assert abs(share - 0.75) <= 0.07, share
