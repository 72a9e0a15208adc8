"""The worker's watchdog: hard deadlines kept off the event loop, and a blocked loop reported
with the task holding it (issue 12, item 13)."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from taskrt.plugins import Registry
from taskrt.worker.foreign import unserved_task_types
from taskrt.worker.watchdog import Watchdog
from tests.support.procs import wait_for
from tests.support.testkit import async_slow, crash


@dataclass(eq=False)
class Item:
    settled: bool = False


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(2)
    loop.close()


def test_an_unsettled_run_is_expired_at_its_deadline_and_a_settled_one_is_not(
    loop: asyncio.AbstractEventLoop,
) -> None:
    expired: list[Item] = []
    dog: Watchdog[Item] = Watchdog(loop, expire=expired.append, stall_after=5)
    late, done, far = Item(), Item(settled=True), Item()
    dog.start()
    try:
        now = time.monotonic()
        dog.watch(far, now + 60)
        dog.watch(late, now + 0.2)
        dog.watch(done, now + 0.1)
        wait_for(lambda: expired, 3, interval=0.02, message="the late run expired")
        time.sleep(0.3)
    finally:
        dog.stop()
    assert expired == [late]
    assert dog.live() == [far]  # the expired one is no longer watched


def test_a_blocked_loop_is_reported_with_its_task_and_deadlines_still_expire(
    loop: asyncio.AbstractEventLoop, caplog: pytest.LogCaptureFixture
) -> None:
    stalls: list[float] = []
    expired: list[Item] = []
    dog: Watchdog[Item] = Watchdog(
        loop, expire=expired.append, stall_after=0.3, stalled=stalls.append
    )

    async def hog() -> None:
        time.sleep(1.2)  # noqa: ASYNC251 - blocking the loop is the point

    dog.start()
    try:
        wait_for(lambda: dog._loop_thread_id is not None, 3, message="the loop answered a probe")
        item = Item()
        with caplog.at_level(logging.INFO, logger="taskrt.worker"):
            loop.call_soon_threadsafe(lambda: loop.create_task(hog(), name="the hog"))
            time.sleep(0.1)
            dog.watch(item, time.monotonic() + 0.3)
            wait_for(lambda: expired, 3, interval=0.02, message="expired while the loop blocks")
            wait_for(lambda: stalls, 3, interval=0.02, message="the stall reported")
            wait_for(
                lambda: "runs again" in caplog.text, 5, interval=0.05, message="loop recovered"
            )
    finally:
        dog.stop()
    assert expired == [item]
    assert len(stalls) == 1
    warning = next(r for r in caplog.records if r.levelno == logging.WARNING)
    assert "task 'the hog'" in warning.getMessage()
    assert "in hog" in warning.getMessage()


def test_task_types_whose_default_queue_a_worker_does_not_serve() -> None:
    registry = Registry(task_types={"testkit.crash": crash, "testkit.async_slow": async_slow})
    assert unserved_task_types(registry, ["default"], "default") == {}
    assert unserved_task_types(registry, ["high"], "default") == {
        "default": ["testkit.async_slow", "testkit.crash"]
    }
