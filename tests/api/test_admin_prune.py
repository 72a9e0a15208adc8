"""``POST /api/v1/admin/prune``: admin only, audited, dry runs delete nothing, bad input is a
422 naming the field."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api, ApiFactory
from tests.support import history

pytestmark = pytest.mark.services

DAY = 86400.0


@pytest.fixture
def seeded(make_api: ApiFactory) -> Api:
    api = make_api(retention_completed="1d", retention_failed="1d")
    history.seed_tasks(api.store.engine, 4, "completed", age=2 * DAY, runs=2)
    history.seed_tasks(api.store.engine, 3, "failed", age=2 * DAY, queue="other")
    history.seed_tasks(api.store.engine, 2, "queued")
    return api


def test_prune_is_for_admins_only(seeded: Api) -> None:
    client = seeded.client
    assert client.post("/api/v1/admin/prune", json={}).status_code == 401
    for role in ("reader", "producer"):
        response = client.post("/api/v1/admin/prune", json={}, headers=seeded.auth(role))
        assert response.status_code == 403, response.text
    assert history.counts(seeded.store.engine)["tasks"] == 9


def test_dry_run_then_prune_audited(seeded: Api) -> None:
    admin = seeded.auth("admin")
    engine = seeded.store.engine
    dry = seeded.client.post("/api/v1/admin/prune", json={"dry_run": True}, headers=admin)
    assert dry.status_code == 200, dry.text
    assert dry.json() == {
        "dry_run": True,
        "deleted": {"tasks": 7, "runs": 11, "audit": 0, "schedule_fires": 0},
        "more": False,
    }
    assert history.counts(engine)["tasks"] == 9
    assert not seeded.store.list_audit(action="history.prune")  # a dry run changes nothing

    done = seeded.client.post(
        "/api/v1/admin/prune", json={"queue": "other", "status": ["failed"]}, headers=admin
    )
    assert done.json()["deleted"] == {"tasks": 3, "runs": 3, "audit": 0, "schedule_fires": 0}
    (row,) = seeded.store.list_audit(action="history.prune")
    assert row.actor.startswith("apikey:")
    assert row.details["queue"] == "other"
    assert row.details["deleted"]["tasks"] == 3
    assert history.counts(engine)["tasks"] == 6


def test_limit_bounds_one_request_and_more_says_call_again(seeded: Api) -> None:
    admin = seeded.auth("admin")
    first = seeded.client.post("/api/v1/admin/prune", json={"limit": 5}, headers=admin)
    assert first.status_code == 200, first.text
    assert (first.json()["deleted"]["tasks"], first.json()["more"]) == (5, True)
    second = seeded.client.post("/api/v1/admin/prune", json={"limit": 5}, headers=admin)
    assert (second.json()["deleted"]["tasks"], second.json()["more"]) == (2, False)
    assert history.counts(seeded.store.engine)["tasks"] == 2  # the two queued tasks


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"older_than": "7 weeks"}, "older_than"),
        ({"status": ["queued"]}, "status"),
        ({"status": []}, "status"),
        ({"archive": "/tmp/x"}, "archive"),
        ({"limit": 0}, "limit"),
        ({"limit": 1_000_001}, "limit"),
    ],
)
def test_bad_input_names_the_field(seeded: Api, body: dict[str, object], field: str) -> None:
    response = seeded.client.post("/api/v1/admin/prune", json=body, headers=seeded.auth("admin"))
    assert response.status_code == 422, response.text
    assert field in response.text
    assert history.counts(seeded.store.engine)["tasks"] == 9
