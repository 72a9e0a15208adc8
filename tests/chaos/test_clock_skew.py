"""Two clocks 60 s apart: a delayed task or a retry neither runs early nor a skew late.
Issue 12, defect 14.

The skew is made with libfaketime on the PostgreSQL server (wall clock 60 s ahead or behind,
monotonic clock untouched), so that Redis, the workers and the test keep the host's true clock:
Redis-ahead-of-PostgreSQL and PostgreSQL-ahead-of-Redis are the two directions. (Redis itself
cannot be started under libfaketime: its jemalloc calls clock_gettime while libfaketime
initialises, and the server never comes up.) Times are measured by the host's clock, in the
handler, so they do not depend on either server's.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.harness import Chaos

pytestmark = pytest.mark.services

SKEW = 60.0
DELAY = 10.0
RETRY_DELAY = 3.0
#: How late a due run may start: the promotion and fetch cadence, not the skew.
LATENESS = 3.0


@pytest.mark.parametrize(
    "postgres_offset", [SKEW, -SKEW], ids=["postgres-60s-ahead", "postgres-60s-behind"]
)
def test_delays_and_retries_keep_their_time_whatever_the_skew(
    chaos: Chaos, postgres_offset: float
) -> None:
    chaos.postgres.stop()
    chaos.postgres.start(skew=postgres_offset)
    skewed = float(chaos.scalar("SELECT extract(epoch FROM now())")) - time.time()
    assert abs(skewed - postgres_offset) < 5, f"the skew did not take: {skewed:.1f} s"

    chaos.spawn("w1", "-c", "2")
    before = time.time()
    (delayed,) = chaos.client.enqueue_many([chaos.record_spec(delay=DELAY)])
    after = time.time()
    (retried,) = chaos.client.enqueue_many([chaos.record_spec(retry_delay=RETRY_DELAY)])

    states = chaos.wait_final([delayed.id, retried.id], timeout=DELAY + LATENESS + 15)
    assert states == {delayed.id: "completed", retried.id: "completed"}, states
    by_task = chaos.executions_by_task()

    (run,) = by_task[delayed.id]
    assert run.at - before >= DELAY, f"a {DELAY} s delay ran after {run.at - before:.2f} s"
    assert run.at - after <= DELAY + LATENESS, f"a {DELAY} s delay ran after {run.at - after:.2f} s"

    first, second = by_task[retried.id]
    waited = second.at - first.at
    assert (first.attempt, second.attempt) == (1, 2)
    assert waited >= RETRY_DELAY, f"a {RETRY_DELAY} s retry ran after {waited:.2f} s"
    assert waited <= RETRY_DELAY + LATENESS, f"a {RETRY_DELAY} s retry ran after {waited:.2f} s"
