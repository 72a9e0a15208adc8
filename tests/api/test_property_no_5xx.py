"""Property: no route of the HTTP API answers 5xx, whatever the body, cursor, path parameter
or header, including JSON nested hundreds of levels deep, lone surrogates and dates pushed out
of range by their offsets (issue 12, "Done when"). Hypothesis drives the app in-process on a
real PostgreSQL and Redis; the examples are derandomized so a CI run is repeatable, and bounded
so it takes about a minute. Schemathesis (``test_schemathesis.py``) covers the documented
shapes against a real server; this covers what the schema does not describe."""

from __future__ import annotations

import json
import string
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskrt.api.app import openapi_document
from taskrt.api.paging import encode_cursor
from tests.api.conftest import ApiFactory

pytestmark = [pytest.mark.services, pytest.mark.slow]

EXAMPLES = 2000

ROUTES = [
    (method.upper(), path, "requestBody" in operation)
    for path, operations in openapi_document()["paths"].items()
    for method, operation in operations.items()
]

# every Unicode code point, lone surrogates (category Cs) included
ANY_CHAR = st.characters(blacklist_categories=(), codec=None)
TEXT = st.one_of(
    st.text(ANY_CHAR, max_size=30),
    st.sampled_from(["\ud800", "a\udfff", "\x00", "", " ", "example.echo", "default"]),
)
DATES = st.one_of(
    st.sampled_from(
        [
            "9999-12-31T23:59:59-14:00",
            "0001-01-01T00:00:00+14:00",
            "9999-12-31T23:59:59+00:00",
            "0001-01-01T00:00:00Z",
            "2024-02-30T00:00:00Z",
            "2024-01-01T00:00:00",
            "9999-12-31T23:59:59.999999-00:01",
        ]
    ),
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 1e300, 0.0, -0.0, 2**63, -(2**63) - 1]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT, DATES)
JSON = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def deep(draw: st.DrawFn) -> Any:
    """A value nested up to 400 levels deep, lists and objects mixed."""
    value: Any = draw(SCALARS)
    for _ in range(draw(st.integers(min_value=0, max_value=400))):
        value = [value] if draw(st.booleans()) else {draw(TEXT): value}
    return value


VALUES = st.one_of(JSON, deep())
FIELDS = [
    "name",
    "payload",
    "queue",
    "delay",
    "run_at",
    "dedup_key",
    "max_retries",
    "retry",
    "retry_params",
    "timeout",
    "priority",
    "cron",
    "timezone",
    "task",
    "misfire_policy",
    "enabled",
    "tasks",
    "task_ids",
    "all",
]
FIELD_VALUES = {
    "name": st.one_of(st.just("example.echo"), TEXT),
    "task": st.one_of(st.just("example.echo"), TEXT),
    "cron": st.one_of(st.sampled_from(["* * * * *", "0 0 31 2 *", "*/0 * * * *"]), TEXT),
    "timezone": st.one_of(st.sampled_from(["UTC", "Europe/Paris", "../../etc/passwd"]), TEXT),
    "run_at": DATES,
    "delay": NUMBERS,
    "retry": st.sampled_from(["fixed", "exponential", "linear", "nope"]),
}


BASE_BODIES: dict[str, dict[str, Any]] = {
    "/api/v1/tasks": {"name": "example.echo"},
    "/api/v1/tasks/batch": {"name": "example.echo"},
    "/api/v1/schedules": {"task": "example.echo", "cron": "* * * * *"},
}


@st.composite
def bodies(draw: st.DrawFn, template: str) -> bytes:
    """A request body for the route ``template``: an object of the API's field names on a
    valid base (so most requests get past validation into the service), or any JSON at all,
    or bytes."""
    kind = draw(st.sampled_from(["fields", "fields", "fields", "batch", "json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "json":
        return json.dumps(draw(VALUES)).encode()
    body = dict(BASE_BODIES.get(template, {}))
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3, unique=True)):
        body[field] = draw(FIELD_VALUES.get(field, VALUES))
    if kind == "batch" and template == "/api/v1/tasks/batch":
        body = {"tasks": [body, *draw(st.lists(st.just(body), max_size=2))]}
    return json.dumps(body).encode()


CURSORS = st.one_of(
    st.text(string.ascii_letters + string.digits + "_-", max_size=40),
    st.tuples(st.sampled_from("tsa"), TEXT).map(
        lambda kv: encode_cursor(kv[0], kv[1].encode("utf-8", "surrogatepass").decode("latin-1"))
    ),
    TEXT,
)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=40)


def _quote(text: str) -> str:
    # lone surrogates travel as their (invalid) UTF-8 bytes, as a hostile client sends them
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def test_no_route_answers_a_server_error(make_api: ApiFactory) -> None:
    api = make_api(rate_limit_admin="1000000/second", rate_limit_anonymous="1000000/second")
    headers = api.auth("admin")
    task = api.client.post("/api/v1/tasks", json={"name": "example.echo"}, headers=headers)
    schedule = api.client.post(
        "/api/v1/schedules", json={"cron": "* * * * *", "task": "example.echo"}, headers=headers
    )
    known = {"task_id": task.json()["id"], "schedule_id": schedule.json()["id"], "name": "default"}

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def no_server_error(data: st.DataObject) -> None:
        method, template, has_body = data.draw(st.sampled_from(ROUTES))
        path = template
        for param in ("task_id", "schedule_id", "name"):
            if "{" + param + "}" in path:
                value = data.draw(st.one_of(st.just(known[param]), st.uuids().map(str), TEXT))
                path = path.replace("{" + param + "}", _quote(value))
        query = "&".join(
            f"{key}={_quote(data.draw(CURSORS if key == 'cursor' else TEXT))}"
            for key in data.draw(
                st.lists(
                    st.sampled_from(["cursor", "limit", "status", "kind", "actor", "queue"]),
                    max_size=2,
                    unique=True,
                )
            )
        )
        sent: dict[str, str | bytes] = dict(headers)
        for name in data.draw(
            st.lists(st.sampled_from(["Idempotency-Key", "X-Request-ID"]), max_size=2, unique=True)
        ):
            sent[name] = data.draw(HEADER_TEXT).encode("latin-1")  # what HTTP/1.1 can carry
        body = data.draw(bodies(template)) if has_body else None
        if body is not None:
            sent["content-type"] = "application/json"
        url = f"{path}?{query}" if query else path
        response = api.client.request(method, url, content=body, headers=sent)
        assert response.status_code < 500, (method, url, body, response.text)
        if response.status_code >= 400:
            assert response.headers["content-type"].startswith("application/problem+json")

    no_server_error()
    # and every stored row still reads back
    for path in (
        "/api/v1/tasks?kind=all&limit=500",
        "/api/v1/schedules?limit=500",
        "/api/v1/audit",
    ):
        assert api.client.get(path, headers=headers).status_code == 200, path
