"""Pruning against real PostgreSQL and SQLite: what goes, what stays, batches, the lock, the
archive and the dry run (issue 15; docs/how-to/retention.md)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from taskrt.db.engine import create_engine
from taskrt.exceptions import ValidationError
from taskrt.prune import Archive, AutoPruner, PruneCounts, Pruner, PruneRequest
from taskrt.records import Actor
from taskrt.settings import load_settings
from taskrt.store import Store
from taskrt.store.pruning import PRUNE_LOCK_KEY, TaskSelection
from tests.support import history

DAY = 86400.0
pytestmark = pytest.mark.services


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database of each kind."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    handle = Store(create_engine(url))
    yield handle
    handle.dispose()


def pruner(store: Store, **settings: Any) -> Pruner:
    values: dict[str, Any] = {
        "database_url": str(store.engine.url.render_as_string(hide_password=False)),
        "retention_completed": "1d",
        "retention_failed": "3d",
        "retention_cancelled": "1d",
        "retention_audit": "10d",
        "retention_schedule_fires": "2d",
        **settings,
    }
    return Pruner(store, load_settings(**values))


def test_retention_prunes_finished_history_and_spares_live_tasks_and_templates(
    store: Store,
) -> None:
    engine = store.engine
    old_done = history.seed_tasks(engine, 5, "completed", age=2 * DAY, runs=2, outbox=True)
    old_cancelled = history.seed_tasks(engine, 2, "cancelled", age=2 * DAY)
    failed_young = history.seed_tasks(engine, 3, "failed", age=2 * DAY, runs=3)  # keeps 3d
    failed_old = history.seed_tasks(engine, 4, "failed", age=4 * DAY, runs=3)
    recent = history.seed_tasks(engine, 3, "completed", age=60)
    queued = history.seed_tasks(engine, 2, "queued")
    running = history.seed_tasks(engine, 2, "running")
    retrying = history.seed_tasks(engine, 2, "retrying", runs=2)
    _, template = history.seed_schedule(engine, fire_ages=[3 * DAY, 3 * DAY + 60, 60])
    history.seed_audit(engine, 6, age=11 * DAY)
    history.seed_audit(engine, 4, age=DAY)

    counts = pruner(store).run(PruneRequest())

    assert counts.to_dict() == {"tasks": 11, "runs": 24, "audit": 6, "schedule_fires": 2}
    left = history.ids(engine)
    gone = {str(i) for i in old_done + old_cancelled + failed_old}
    assert not gone & left
    for kept in (failed_young, recent, queued, running, retrying, [template]):
        assert {str(i) for i in kept} <= left
    after = history.counts(engine)
    assert after["outbox"] == 0  # the pruned runs' outbox rows went with them
    assert after["audit_log"] == 4
    assert after["schedule_fires"] == 1
    assert history.orphans(engine) == (0, 0)


def test_zero_keeps_forever(store: Store) -> None:
    history.seed_tasks(store.engine, 3, "completed", age=1000 * DAY)
    history.seed_audit(store.engine, 2, age=1000 * DAY)
    counts = pruner(store, retention_completed="0", retention_audit="0").run(PruneRequest())
    assert counts.to_dict() == {"tasks": 0, "runs": 0, "audit": 0, "schedule_fires": 0}
    assert history.counts(store.engine)["tasks"] == 3


def test_dry_run_counts_and_deletes_nothing(store: Store) -> None:
    history.seed_tasks(store.engine, 7, "completed", age=2 * DAY, runs=2)
    history.seed_audit(store.engine, 3, age=20 * DAY)
    before = history.counts(store.engine)
    would = pruner(store).run(PruneRequest(dry_run=True))
    assert history.counts(store.engine) == before
    assert would.to_dict() == {"tasks": 7, "runs": 14, "audit": 3, "schedule_fires": 0}
    assert pruner(store).run(PruneRequest()).to_dict() == would.to_dict()


def test_filters_and_older_than(store: Store) -> None:
    engine = store.engine
    a = history.seed_tasks(engine, 3, "completed", age=3600, queue="a", name="x")
    b = history.seed_tasks(engine, 3, "completed", age=3600, queue="b", name="x")
    c = history.seed_tasks(engine, 3, "failed", age=3600, queue="a", name="y")
    history.seed_audit(engine, 2, age=7200)
    # the settings (1d) would keep all of them; --older-than 30m overrides
    request = PruneRequest(older_than=1800, queue="a", statuses=("completed",))
    counts = pruner(store).run(request)
    assert counts.to_dict() == {"tasks": 3, "runs": 3, "audit": 0, "schedule_fires": 0}
    left = history.ids(engine)
    assert not {str(i) for i in a} & left
    assert {str(i) for i in b + c} <= left
    assert pruner(store).run(PruneRequest(older_than=1800, task_type="y")).tasks == 3
    assert history.counts(engine)["audit_log"] == 2  # a filtered prune leaves the audit log
    assert pruner(store).run(PruneRequest(older_than=1800)).to_dict()["audit"] == 2


def test_limit_stops_each_table_and_says_more_is_due(store: Store) -> None:
    engine = store.engine
    history.seed_tasks(engine, 7, "completed", age=2 * DAY)
    history.seed_audit(engine, 5, age=20 * DAY)
    small = pruner(store, retention_batch_size=2)
    first = small.run(PruneRequest(limit=3))
    assert (first.tasks, first.audit, first.more) == (3, 3, True)
    assert history.counts(engine)["tasks"] == 4
    second = small.run(PruneRequest(limit=4))
    assert (second.tasks, second.audit, second.more) == (4, 2, True)  # audit stopped short
    third = small.run(PruneRequest(limit=4))
    assert (third.tasks, third.audit, third.more) == (0, 0, False)
    assert history.counts(engine)["tasks"] == 0


def test_bad_requests_name_the_problem() -> None:
    with pytest.raises(ValidationError, match="status queued cannot be pruned"):
        PruneRequest(statuses=("completed", "queued"))
    with pytest.raises(ValidationError, match="limit must be at least 1, not 0"):
        PruneRequest(limit=0)


@pytest.mark.parametrize("name", ["archive.jsonl", "archive.jsonl.gz"])
def test_archive_holds_exactly_what_was_deleted(store: Store, tmp_path: Path, name: str) -> None:
    engine = store.engine
    old = {str(i) for i in history.seed_tasks(engine, 23, "failed", age=5 * DAY, runs=2)}
    kept = history.seed_tasks(engine, 4, "completed", age=60)
    path = tmp_path / name
    with Archive(path) as sink:
        counts = pruner(store, retention_batch_size=5).run(PruneRequest(), archive=sink)
    opener: Any = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt") as handle:
        lines = [json.loads(line) for line in handle]
    left = history.ids(engine)
    archived = {line["id"] for line in lines}
    assert counts.tasks == 23 == len(lines)
    assert archived == old  # every deleted task, and nothing else
    assert not archived & left
    assert {str(i) for i in kept} <= left
    first = lines[0]
    assert first["format"] == 1
    assert first["status"] == "failed"
    assert [r["attempt"] for r in first["runs"]] == [1, 2]
    assert first["runs"][0]["task_id"] == first["id"]
    assert first["runs"][1]["error_type"] == "ValueError"


def test_step_takes_one_batch_per_table(store: Store) -> None:
    history.seed_tasks(store.engine, 25, "completed", age=2 * DAY)
    history.seed_audit(store.engine, 15, age=20 * DAY)
    step = pruner(store, retention_batch_size=10).step()
    assert step is not None
    assert step.to_dict() == {"tasks": 10, "runs": 10, "audit": 10, "schedule_fires": 0}
    assert step.more  # a full batch: more is likely due
    assert history.counts(store.engine)["tasks"] == 15


def test_a_turn_works_the_backlog_off_in_steps(store: Store) -> None:
    history.seed_tasks(store.engine, 25, "completed", age=2 * DAY)
    history.seed_tasks(store.engine, 3, "queued")
    auto = AutoPruner(pruner(store, retention_batch_size=10), interval=60, duty=1.0)
    total = auto.turn()
    assert total is not None
    assert (total.tasks, total.runs) == (25, 25)
    assert history.counts(store.engine)["tasks"] == 3
    assert auto.turn() == PruneCounts()  # nothing due: a turn that removes nothing


def test_one_worker_of_the_fleet_has_the_turn(pg_url: str) -> None:
    store, other = Store(create_engine(pg_url)), Store(create_engine(pg_url))
    try:
        history.seed_tasks(store.engine, 5, "completed", age=2 * DAY)
        with other.pruning_turn() as held:  # another worker working a backlog off
            assert held
            assert AutoPruner(pruner(store), interval=60, duty=1.0).turn() is None
            assert history.counts(store.engine)["tasks"] == 5
        total = AutoPruner(pruner(store), interval=60, duty=1.0).turn()
        assert total is not None
        assert total.tasks == 5
    finally:
        store.dispose()
        other.dispose()


def test_a_stopped_pruner_ends_its_turn_at_the_next_pause(store: Store) -> None:
    history.seed_tasks(store.engine, 30, "completed", age=2 * DAY)
    auto = AutoPruner(pruner(store, retention_batch_size=10), interval=60, duty=0.01)
    auto.stop()  # before the turn: the first pause (99 times the step) ends it at once
    total = auto.turn()
    assert total is not None
    assert total.tasks == 10


def test_step_yields_to_another_pruner(pg_url: str) -> None:
    store = Store(create_engine(pg_url))
    try:
        history.seed_tasks(store.engine, 5, "completed", age=2 * DAY)
        with store.engine.begin() as conn:  # another process pruning now
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(PRUNE_LOCK_KEY)))
            assert pruner(store).step() is None
        assert history.counts(store.engine)["tasks"] == 5
        step = pruner(store).step()
        assert step is not None
        assert step.tasks == 5
    finally:
        store.dispose()


def test_a_prune_by_someone_is_audited(store: Store) -> None:
    history.seed_tasks(store.engine, 2, "completed", age=2 * DAY)
    pruner(store).run(PruneRequest(queue="default"), actor=Actor("cli:tester"))
    (row,) = store.list_audit(action="history.prune")
    assert row.actor == "cli:tester"
    assert row.details["deleted"]["tasks"] == 2
    assert row.details["queue"] == "default"


def test_each_pick_is_an_index_range_scan(pg_url: str) -> None:
    """On a table where reading every row would lose, a batch's pick reads the pruning
    index, not the whole table (EXPLAIN of the statement prune_tasks runs)."""
    store = Store(create_engine(pg_url))
    try:
        for _ in range(4):  # kept: completed an hour ago, failed 20 days ago (failed keep 30d)
            history.seed_tasks(store.engine, 5000, "completed", age=3600)
            history.seed_tasks(store.engine, 5000, "failed", age=20 * DAY)
        history.seed_tasks(store.engine, 500, "completed", age=9 * DAY)
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE tasks"))
        selection = TaskSelection({"completed": 7 * DAY})
        pick = store.pick_statement(selection, "completed", 7 * DAY, 500)
        sql = str(pick.compile(store.engine, compile_kwargs={"literal_binds": True}))
        with store.engine.connect() as conn:
            plan = "\n".join(conn.execute(sa.text("EXPLAIN " + sql)).scalars())
        assert "Index Scan using ix_tasks_status_finished_at" in plan, plan
        assert "Seq Scan" not in plan, plan
        assert "Sort" not in plan, plan
    finally:
        store.dispose()


def test_a_history_pick_reads_the_oldest_rows_only(pg_url: str) -> None:
    """Nothing due in a large audit log: the pick reads its batch of the oldest ids, not every
    row (a filter on the time column alone would walk the whole table each minute)."""
    store = Store(create_engine(pg_url))
    try:
        history.seed_audit(store.engine, 20_000, age=DAY)
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE audit_log"))
        pick = store.history_pick_statement("audit", 7 * DAY, 100)
        sql = str(pick.compile(store.engine, compile_kwargs={"literal_binds": True}))
        with store.engine.connect() as conn:
            plan = conn.execute(sa.text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql)).scalar_one()
        nodes = [plan[0]["Plan"]]
        read = 0
        while nodes:
            node = nodes.pop()
            nodes += node.get("Plans", [])
            if "Relation Name" in node:
                read += node["Actual Rows"] * node["Actual Loops"]
                read += node.get("Rows Removed by Filter", 0)
        assert read <= 2 * 100, plan
        assert store.prune_history("audit", 7 * DAY, limit=100) == 0
    finally:
        store.dispose()
