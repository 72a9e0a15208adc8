"""Fixtures of the observability tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskrt import metrics


@pytest.fixture(autouse=True)
def _no_queue_depth_source() -> Iterator[None]:
    """Tests that read this process's registry never ask an app an earlier test built (and
    whose database is gone) for queue depth."""
    metrics.watch_queues(None)
    yield
    metrics.watch_queues(None)
