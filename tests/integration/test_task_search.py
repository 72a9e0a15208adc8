"""Task search (``Store.list_tasks`` with a :class:`TaskSearch`): every filter, on PostgreSQL and
SQLite, with keyset paging; and on PostgreSQL, every filter reads an index on a table large
enough that a sequential scan would win if the index were missing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ClauseElement, Executable

from taskrt.client import Client
from taskrt.db.engine import create_engine
from taskrt.exceptions import ValidationError
from taskrt.store import Store
from taskrt.store.search import PayloadMatch, TaskSearch, search_statement
from tests.support.searchdata import T0, add_task, id_at

pytestmark = pytest.mark.services


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    url = request.getfixturevalue("pg_url" if request.param == "postgresql" else "sqlite_url")
    handle = create_engine(url)
    yield handle
    handle.dispose()


@pytest.fixture
def store(engine: Engine) -> Iterator[Store]:
    handle = Store(engine)
    yield handle
    handle.dispose()


def ids(store: Store, **filters: Any) -> list[uuid.UUID]:
    return [t.id for t in store.list_tasks(limit=500, **filters)]


def newest_first(*task_ids: uuid.UUID) -> list[uuid.UUID]:
    return sorted(task_ids, reverse=True)


def test_each_filter_finds_exactly_its_tasks(engine: Engine, store: Store) -> None:
    day = timedelta(days=1)
    plain = add_task(engine, created=T0)
    failed = add_task(
        engine,
        created=T0 + day,
        status="failed",
        queue="mail",
        name="mail.send",
        finished=T0 + 2 * day,
        errors=("ValueError", "SmtpError"),
    )
    done = add_task(
        engine,
        created=T0 + 2 * day,
        status="completed",
        finished=T0 + 3 * day,
        errors=("SmtpError", None),
        dedup_key="order-7",
        payload={"customer_id": 42, "region": {"code": "eu"}, "vip": True, "note": None},
    )
    other = add_task(engine, created=T0 + 3 * day, payload={"customer_id": "42", "vip": False})
    template = add_task(engine, created=T0 + 4 * day, kind="scheduled", status="pending")

    assert ids(store) == newest_first(plain, failed, done, other)
    assert ids(store, kind="scheduled") == [template]
    assert ids(store, kind=None) == newest_first(plain, failed, done, other, template)
    assert ids(store, status="failed") == [failed]
    assert ids(store, queue="mail") == [failed]
    assert ids(store, name="mail.send") == [failed]
    assert ids(store, dedup_key="order-7") == [done]
    assert ids(store, created_after=T0 + day) == newest_first(failed, done, other)
    assert ids(store, created_before=T0 + day) == [plain]
    assert ids(store, created_after=T0 + day, created_before=T0 + 3 * day) == newest_first(
        failed, done
    )
    assert ids(store, finished_after=T0 + 3 * day) == [done]
    assert ids(store, finished_before=T0 + 3 * day) == [failed]
    # the last run that raised decides: ValueError was followed by SmtpError
    assert ids(store, error_type="SmtpError") == newest_first(failed, done)
    assert ids(store, error_type="ValueError") == []
    assert ids(store, error_type="SmtpError", status="completed") == [done]


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("customer_id:42", {"done"}),  # the number, not the string
        ('customer_id:"42"', {"other"}),
        ("region.code:eu", {"done"}),  # a nested key; unquoted text is a string
        ("payload.region.code:eu", {"done"}),  # the payload. prefix is allowed
        ("vip:true", {"done"}),
        ("vip:false", {"other"}),
        ("note:null", {"done"}),  # null, not a missing key
        ("customer_id:43", set()),
        ("region:eu", set()),
        ("tags:x", set()),  # an array holding "x" is not the string "x"
    ],
)
def test_payload_equality(engine: Engine, store: Store, text: str, matches: set[str]) -> None:
    tasks = {
        "done": add_task(
            engine,
            payload={"customer_id": 42, "region": {"code": "eu"}, "vip": True, "note": None},
        ),
        "other": add_task(engine, payload={"customer_id": "42", "vip": False, "tags": ["x"]}),
        "none": add_task(engine),
        "list": add_task(engine, payload=[42]),
    }
    match = PayloadMatch.parse(text, sep=":", option="payload")

    found = set(ids(store, payload=(match,)))

    assert found == {tasks[m] for m in matches}


def test_payload_filters_combine(engine: Engine, store: Store) -> None:
    both = add_task(engine, payload={"a": 1, "b": 2})
    add_task(engine, payload={"a": 1, "b": 3})
    parsed = tuple(PayloadMatch.parse(t, sep="=", option="--payload") for t in ("a=1", "b=2"))

    assert ids(store, payload=parsed) == [both]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("customer_id", "has no ':'"),
        (":42", "is not a payload key path"),
        ("a..b:1", "is not a payload key path"),
        ("a b:1", "is not a payload key path"),
        ('a:{"x": 1}', "compares strings, numbers, booleans and null only"),
        ("a:[1]", "compares strings, numbers, booleans and null only"),
    ],
)
def test_bad_payload_filters_are_named(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        PayloadMatch.parse(text, sep=":", option="payload")
    assert str(caught.value).startswith("payload: ")


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValidationError, match=r"finished_after: .* has no time zone"):
        TaskSearch(finished_after=datetime(2026, 1, 1))


def test_keyset_pages_walk_every_match_once(engine: Engine, store: Store) -> None:
    wanted = [
        add_task(engine, created=T0 + timedelta(seconds=i), status="failed") for i in range(7)
    ]
    add_task(engine, created=T0 + timedelta(seconds=3, milliseconds=500))  # another status

    seen: list[uuid.UUID] = []
    before = None
    while True:
        page = store.list_tasks(status="failed", limit=3, before=before)
        seen += [t.id for t in page]
        if len(page) < 3:
            break
        before = page[-1].id

    assert seen == newest_first(*wanted)


# --- PostgreSQL: every filter reads an index --------------------------------------------------

ROWS = 200_000

FILTERS: dict[str, TaskSearch] = {
    "none": TaskSearch(),
    "all kinds": TaskSearch(kind=None),
    "status": TaskSearch(status="failed"),
    "queue": TaskSearch(queue="q3"),
    "queue and status": TaskSearch(queue="q0", status="failed"),
    "type": TaskSearch(name="job.7"),
    "created range": TaskSearch(
        created_after=T0 + timedelta(hours=1), created_before=T0 + timedelta(hours=2)
    ),
    "finished range": TaskSearch(
        finished_after=T0 + timedelta(hours=1), finished_before=T0 + timedelta(hours=2)
    ),
    "error type": TaskSearch(error_type="SmtpError"),
    "dedup key": TaskSearch(dedup_key="order-77"),
    "payload": TaskSearch(payload=(PayloadMatch(("customer_id",), 77),)),
    "payload nested": TaskSearch(payload=(PayloadMatch(("region", "code"), "r7"),)),
    "status and type and payload": TaskSearch(
        status="failed", name="job.70", payload=(PayloadMatch(("customer_id",), 70),)
    ),
    "error type and queue": TaskSearch(error_type="SmtpError", queue="q0"),
}

READ_BUDGET = ROWS * 2 // 5
"""At most this many rows may a search read (returned, or read and dropped by a filter, summed
over every table scan): an index that only orders the rows (the primary key walked backwards,
checking a selective filter row by row) would pass a "no sequential scan" check and still read
the whole table. The finished range (an hour of the seeded tasks, about a third of them) reads
the most."""


@pytest.fixture(scope="module")
def big_pg_url(pg_template: str) -> Iterator[str]:
    """A database holding ROWS tasks (a tenth failed, each with a run that raised), analysed."""
    from tests.support import services

    with services.cloned_database(pg_template) as url:
        engine = create_engine(url)
        start_ms = int(T0.timestamp() * 1000)
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    """
                    INSERT INTO tasks (id, name, type, priority, queue_name, payload, status,
                        dedup_key, max_retries, retry_strategy, retry_params, retry_count,
                        lost_runs, created_at, updated_at, finished_at)
                    SELECT
                        -- a UUIDv7 of the task's millisecond (one task per 50 ms)
                        (lpad(to_hex(:start + g * 50), 12, '0') || '7000' || '8000'
                            || lpad(to_hex(g), 12, '0'))::uuid,
                        'job.' || (g % 100), 'immediate', 0, 'q' || (g % 10),
                        jsonb_build_object('customer_id', g % 5000,
                            'region', jsonb_build_object('code', 'r' || (g % 50))),
                        CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'completed' END,
                        'order-' || g, 3, 'fixed', '{}', 0, 0,
                        to_timestamp((:start + g * 50) / 1000.0),
                        to_timestamp((:start + g * 50) / 1000.0),
                        to_timestamp((:start + g * 50) / 1000.0 + 1)
                    FROM generate_series(1, :rows) AS g
                    """
                ),
                {"start": start_ms, "rows": ROWS},
            )
            conn.execute(
                sa.text(
                    """
                    INSERT INTO task_runs (id, task_id, attempt, status, queue_name,
                        available_at, enqueued_at, error_type)
                    SELECT gen_random_uuid(), id, 1,
                        CASE WHEN status = 'failed' THEN 'failed' ELSE 'succeeded' END,
                        queue_name, created_at, created_at,
                        CASE WHEN status = 'failed' THEN
                            CASE WHEN (payload->>'customer_id')::int % 7 = 0
                                THEN 'SmtpError' ELSE 'ValueError' END
                        END
                    FROM tasks
                    """
                )
            )
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(sa.text("ANALYZE"))
        engine.dispose()
        yield url


class Explain(Executable, ClauseElement):
    """``EXPLAIN (ANALYZE, FORMAT JSON)`` of a statement, its values bound as the statement
    binds them (ANALYZE: the rows each scan really read)."""

    inherit_cache = False

    def __init__(self, statement: sa.Select[Any]) -> None:
        self.statement = statement


@compiles(Explain, "postgresql")
def _explain(element: Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (ANALYZE, FORMAT JSON) " + str(compiler.process(element.statement, **kw))


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def _scans(conn: sa.Connection, search: TaskSearch) -> list[dict[str, Any]]:
    """The plan's nodes that read a table (scan type, relation, index, filter)."""
    stmt = search_statement(search, limit=51, before=id_at(T0 + timedelta(hours=3)))
    plan = conn.execute(Explain(stmt)).scalar_one()[0]
    return [node for node in _plan_nodes(plan["Plan"]) if "Relation Name" in node]


def _rows_read(scans: list[dict[str, Any]]) -> int:
    return sum(
        node["Actual Rows"] * node["Actual Loops"]
        + node.get("Rows Removed by Filter", 0)
        + node.get("Rows Removed by Index Recheck", 0)
        for node in scans
    )


@pytest.mark.slow
@pytest.mark.parametrize("label", list(FILTERS))
def test_every_filter_reads_an_index(big_pg_url: str, label: str) -> None:
    engine = create_engine(big_pg_url)
    try:
        with engine.connect() as conn:
            scans = _scans(conn, FILTERS[label])
            found = conn.execute(search_statement(FILTERS[label], limit=51)).all()
    finally:
        engine.dispose()

    assert not any(node["Node Type"] == "Seq Scan" for node in scans), scans
    assert {node["Relation Name"] for node in scans} <= {"tasks", "task_runs"}
    assert _rows_read(scans) <= READ_BUDGET, (label, _rows_read(scans), scans)
    assert found, f"{label}: the seeded table holds matches, so the page is not empty"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("index", "label"),
    [
        ("ix_tasks_payload", "payload"),
        ("ix_tasks_tenant_dedup_key_id", "dedup key"),
        ("ix_task_runs_error_type_task_id", "error type"),
    ],
)
def test_the_plan_check_would_see_a_missing_index(big_pg_url: str, index: str, label: str) -> None:
    """Guards the check above: without the index, the same search reads rows and filters them
    one by one (a sequential scan, or the primary key walked with a row filter)."""
    engine = create_engine(big_pg_url)
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            conn.execute(sa.text(f"DROP INDEX {index}"))  # undone by the rollback
            scans = _scans(conn, FILTERS[label])
            transaction.rollback()
    finally:
        engine.dispose()

    assert any(node["Node Type"] == "Seq Scan" for node in scans) or (
        _rows_read(scans) > READ_BUDGET
    ), (_rows_read(scans), scans)


SMALL_TENANT_ROWS = 400
"""Tasks of a second, small tenant in the big table (copies of the default tenant's first)."""


@pytest.mark.slow
@pytest.mark.parametrize(
    "label", ["none", "status", "queue", "queue and status", "type", "created range", "dedup key"]
)
def test_a_small_tenants_search_reads_only_its_range(big_pg_url: str, label: str) -> None:
    """Every search index leads with the tenant: a filter of a small tenant sharing the table
    with a big one reads that tenant's range, whatever the big one holds."""
    search = replace(FILTERS[label], tenant="small")
    engine = create_engine(big_pg_url)
    try:
        with engine.connect() as conn, conn.begin() as transaction:
            conn.execute(
                sa.text(
                    """
                    INSERT INTO tasks (id, tenant, name, type, priority, queue_name, payload,
                        status, dedup_key, max_retries, retry_strategy, retry_params,
                        retry_count, lost_runs, created_at, updated_at, finished_at)
                    SELECT overlay(id::text placing '9' from 20 for 1)::uuid, 'small', name,
                        type, priority, queue_name, payload, status, dedup_key, max_retries,
                        retry_strategy, retry_params, retry_count, lost_runs, created_at,
                        updated_at, finished_at
                    FROM tasks ORDER BY id LIMIT :rows
                    """
                ),
                {"rows": SMALL_TENANT_ROWS},
            )
            conn.execute(sa.text("ANALYZE tasks"))  # undone by the rollback, like the rows
            scans = _scans(conn, search)
            found = conn.execute(search_statement(search, limit=51)).all()
            transaction.rollback()
    finally:
        engine.dispose()

    assert not any(node["Node Type"] == "Seq Scan" for node in scans), scans
    assert _rows_read(scans) <= SMALL_TENANT_ROWS, (label, _rows_read(scans), scans)
    assert {row.tenant for row in found} <= {"small"}


def test_the_python_client_searches(client: Client) -> None:
    eu = client.enqueue("testkit.record", {"customer_id": 42, "region": {"code": "eu"}}).id
    client.enqueue("testkit.record", {"customer_id": 42, "region": {"code": "us"}})
    client.enqueue("testkit.record", {"customer_id": 7, "region": {"code": "eu"}})

    found = client.list_tasks(status="queued", payload={"customer_id": 42, "region.code": "eu"})

    assert [t.id for t in found] == [eu]
    assert len(client.list_tasks(name="testkit.record", limit=2)) == 2
    with pytest.raises(ValidationError, match="payload: 'a b' is not a payload key path"):
        client.list_tasks(payload={"a b": 1})
    with pytest.raises(ValidationError, match="compares strings, numbers, booleans and null"):
        client.list_tasks(payload={"customer_id": [42]})
