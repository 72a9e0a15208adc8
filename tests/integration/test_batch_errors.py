"""A refused batch names each bad item: every problem's loc starts with the item's index, and
the error each item alone would have raised comes with it, so callers never check again."""

from __future__ import annotations

import pytest

from taskrt.exceptions import BatchValidationError, UnknownTaskError, ValidationError
from taskrt.service import EnqueueSpec, TaskService

pytestmark = pytest.mark.services


def test_every_bad_item_is_reported_by_index_and_nothing_is_stored(
    service: TaskService,
) -> None:
    specs = [
        EnqueueSpec(name="example.echo"),
        EnqueueSpec(name="example.nope"),
        EnqueueSpec(name="example.echo", queue="bad queue!"),
    ]

    with pytest.raises(BatchValidationError) as excinfo:
        service.enqueue_many(specs)

    error = excinfo.value
    assert [e["loc"] for e in error.errors] == [[1, "name"], [2, "queue"]]
    assert error.errors[0]["msg"] == "unknown task 'example.nope'"
    assert [index for index, _ in error.items] == [1, 2]
    unknown, bad_queue = (item for _, item in error.items)
    assert isinstance(unknown, UnknownTaskError)
    with pytest.raises(ValidationError) as alone:
        service.enqueue(specs[2])
    assert str(bad_queue) == str(alone.value)  # the item's own error, as if sent alone
    assert service.store.list_tasks(limit=10) == []


def test_prepare_many_checks_without_storing(service: TaskService) -> None:
    items = service.prepare_many([EnqueueSpec(name="example.echo") for _ in range(3)])

    assert len(items) == 3
    assert service.store.list_tasks(limit=10) == []
