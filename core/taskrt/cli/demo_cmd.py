"""``taskrt demo``: taskrt's main job in one command, on whatever backend is configured (the
embedded SQLite file by default): enqueue a batch of example tasks, run them with a worker in
this process, show progress and a summary."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

import click

from taskrt.cli.output import console, print_table
from taskrt.cli.state import get_state
from taskrt.exceptions import ConfigurationError

EXAMPLE_TYPES = ("example.echo", "example.word_count", "example.sleep", "example.flaky")
TEXT = "the quick brown fox jumps over the lazy dog and the dog sleeps on"


def demo_specs(count: int, rng: random.Random) -> list[Any]:
    """A mix of example tasks: echoes, word counts, short sleeps and flaky ones that retry."""
    from taskrt.service import EnqueueSpec

    specs = []
    for i in range(count):
        kind = i % 10
        if kind < 4:
            specs.append(EnqueueSpec(name="example.echo", payload={"n": i}))
        elif kind < 7:
            words = rng.sample(TEXT.split(), k=6)
            specs.append(EnqueueSpec(name="example.word_count", payload={"text": " ".join(words)}))
        elif kind < 9:
            specs.append(EnqueueSpec(name="example.sleep", payload={"ms": rng.randint(5, 50)}))
        else:
            specs.append(
                EnqueueSpec(
                    name="example.flaky",
                    payload={"succeed_on_attempt": 2},
                    retry="fixed",
                    retry_params={"delay": 0.2},
                )
            )
    return specs


@click.command("demo")
@click.option("--tasks", "count", type=click.IntRange(1, 100_000), default=200, show_default=True)
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed of the task mix.")
def demo_command(count: int, concurrency: int, seed: int) -> None:
    """Process a batch of example tasks with an in-process worker and summarize the outcome.

    Needs the example handlers (`pip install ./handlers_example`). On the embedded SQLite
    default the schema is created first if needed.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from taskrt.backends import describe_backend
    from taskrt.db import migrate
    from taskrt.worker import WorkerOptions

    state = get_state()
    registry = state.runtime.registry
    missing = [name for name in EXAMPLE_TYPES if name not in registry.task_types]
    if missing:
        raise ConfigurationError(
            f"the demo needs the example handlers ({', '.join(missing)} not installed): "
            "run `pip install ./handlers_example` (or `make install`)"
        )
    settings = state.settings
    store = state.app.store
    if settings.is_sqlite and not migrate.is_up_to_date(store.engine):
        migrate.upgrade(store.engine)
    service = state.service  # bound to the chosen tenant, like the demo's worker
    backend = describe_backend(settings)
    click.echo(f"store: {backend['store']}, queues: {backend['queue']}")

    worker = state.app.worker(
        WorkerOptions(
            queues=["default"],
            concurrency=concurrency,
            name="demo",
            shutdown_grace=5,
            tenants=[service.tenant],
        )
    )
    thread = threading.Thread(target=worker.run, name="taskrt-demo-worker", daemon=True)
    thread.start()
    started = time.monotonic()
    rng = random.Random(seed)  # noqa: S311 - a reproducible task mix, not security
    results = service.enqueue_many(demo_specs(count, rng))
    ids = [r.id for r in results]
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console(),
    ) as progress:
        bar = progress.add_task("processing", total=len(ids))
        finished = 0
        while finished < len(ids):
            time.sleep(0.1)
            statuses = Counter(t.status.value for t in service.get_many(ids).values())
            finished = statuses["completed"] + statuses["failed"] + statuses["cancelled"]
            progress.update(bar, completed=finished)
    elapsed = time.monotonic() - started
    worker.request_stop()
    thread.join(30)
    _summary(service, ids, elapsed)


def _summary(service: Any, ids: list[Any], elapsed: float) -> None:
    tasks = [service.get(task_id) for task_id in ids]
    by_type: dict[str, Counter[str]] = {}
    for task in tasks:
        row = by_type.setdefault(task.name, Counter())
        row[task.status.value] += 1
        row["runs"] += len(task.runs)
        row["retries"] += sum(1 for r in task.runs if r.status.value == "failed")
    print_table(
        "Summary",
        ["task type", "tasks", "completed", "failed", "runs", "retried after failure"],
        [
            (
                name,
                sum(v for k, v in row.items() if k not in ("runs", "retries")),
                row["completed"],
                row["failed"],
                row["runs"],
                row["retries"],
            )
            for name, row in sorted(by_type.items())
        ],
    )
    done = sum(1 for t in tasks if t.status.value == "completed")
    click.echo(
        f"{done} of {len(tasks)} tasks completed in {elapsed:.1f} s "
        f"({len(tasks) / elapsed:.0f} tasks/s); every attempt is recorded: "
        f"`taskrt task show {tasks[-1].id}`"
    )
