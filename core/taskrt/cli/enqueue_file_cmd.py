"""``taskrt enqueue-file FILE``: create many tasks from JSON lines, with a progress bar."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

import click

from taskrt.cli.output import print_json
from taskrt.cli.state import get_state
from taskrt.exceptions import BatchValidationError, ValidationError
from taskrt.limits import SERVICE_BATCH_MAX
from taskrt.records import Actor
from taskrt.service import EnqueueResult, EnqueueSpec, TenantTasks

# fields a line may hold, with the JSON types each accepts (run_at is parsed from a string)
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "queue": (str,),
    "delay": (int, float),
    "run_at": (str,),
    "dedup_key": (str,),
    "max_retries": (int,),
    "retry": (str,),
    "retry_params": (dict,),
    "timeout": (int, float),
    "priority": (int,),
    "trace_id": (str,),
}


def spec_from_line(text: str, line: int) -> EnqueueSpec:
    """The task one JSON line asks for; ValidationError naming the line if it is not one."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"line {line}: not valid JSON ({exc.msg})") from None
    except RecursionError:  # far past TASKRT_MAX_JSON_DEPTH: the parser itself gave up
        raise ValidationError(
            f"line {line}: nested too deep to parse (see TASKRT_MAX_JSON_DEPTH)"
        ) from None
    if not isinstance(data, dict):
        raise ValidationError(f"line {line}: expected a JSON object with a name, got {text[:80]}")
    for key, value in data.items():
        types = _TYPES.get(key)
        if types is not None and value is not None and not isinstance(value, types):
            wanted = " or ".join(t.__name__ for t in types)
            raise ValidationError(f"line {line}: {key} must be {wanted}, got {value!r}")
    if isinstance(data.get("run_at"), str):
        try:
            data["run_at"] = datetime.fromisoformat(data["run_at"])
        except ValueError:
            raise ValidationError(
                f"line {line}: run_at {data['run_at']!r} is not an ISO 8601 time"
            ) from None
    try:
        return EnqueueSpec.from_mapping(data)
    except ValidationError as exc:
        raise ValidationError(f"line {line}: {exc}") from None


@dataclass
class Loaded:
    """What has been stored so far."""

    lines: int = 0
    results: list[tuple[int, EnqueueResult]] = field(default_factory=list)

    @property
    def created(self) -> int:
        """Tasks made new."""
        return sum(1 for _, r in self.results if r.created)


def _decode(raw: bytes, line: int) -> str:
    """One line's text without surrounding blanks (and without a byte-order mark)."""
    try:
        return raw.decode("utf-8-sig" if line == 1 else "utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ValidationError(f"line {line}: not UTF-8 text ({exc.reason})") from None


def _store(
    service: TenantTasks, batch: list[tuple[int, EnqueueSpec]], actor: Actor, loaded: Loaded
) -> None:
    """Store one batch (all or nothing); on refusal name the first bad line."""
    try:
        results = service.enqueue_many([spec for _, spec in batch], actor=actor)
    except ValidationError as exc:
        # the service says which item it refused, with that item's own error: blame its line
        items = exc.items if isinstance(exc, BatchValidationError) else [(0, exc)]
        if len(batch) == 1 or isinstance(exc, BatchValidationError):
            index, problem = items[0]
            raise _stopped(f"line {batch[index][0]}: {problem}", batch[0][0], loaded) from None
        raise _stopped(str(exc), batch[0][0], loaded) from None
    loaded.results.extend((line, result) for (line, _), result in zip(batch, results, strict=True))


def _stopped(reason: str, first_unstored: int, loaded: Loaded) -> ValidationError:
    if not loaded.results:
        return ValidationError(f"{reason}\nstopped: nothing was stored")
    return ValidationError(
        f"{reason}\nstopped: the {len(loaded.results)} task(s) of lines 1 to "
        f"{first_unstored - 1} were stored; nothing from line {first_unstored} on was"
    )


@click.command("enqueue-file")
@click.argument("file", type=click.File("rb"))
@click.option(
    "--batch-size",
    type=click.IntRange(1, SERVICE_BATCH_MAX),
    default=500,
    show_default=True,
    help="Lines stored per transaction.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print every task id, with its line, as JSON."
)
def enqueue_file_command(file: IO[bytes], batch_size: int, as_json: bool) -> None:
    """Create the tasks listed in FILE, one JSON object per line (`-` reads standard input).

    Each line holds a `name` and may hold `payload`, `queue`, `delay`, `run_at` (ISO 8601 with
    a time zone), `dedup_key`, `max_retries`, `retry`, `retry_params`, `timeout`, `priority`
    and `trace_id`, as `taskrt enqueue` takes them; blank lines are skipped. Lines are stored
    in batches of --batch-size, each batch in one transaction, all or nothing: at the first bad
    line the command stops and names it; the batches before it stay stored, nothing of its own
    batch or after it is. A progress bar shows how far it got.
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
    )

    state = get_state()
    service, actor = state.service, state.actor()
    total = _size(file)
    loaded = Loaded()
    stored = TextColumn("{task.fields[stored]} task(s) stored")
    columns = (
        [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), stored]
        if total is not None
        else [TextColumn("{task.description}"), stored]
    )
    console = Console(stderr=True)
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as progress:
        bar = progress.add_task("enqueueing", total=total, stored=0)
        batch: list[tuple[int, EnqueueSpec]] = []
        for line, raw in enumerate(file, start=1):
            loaded.lines = line
            progress.advance(bar, len(raw) if total is not None else 0)
            try:
                text = _decode(raw, line)
                if not text:
                    continue
                batch.append((line, spec_from_line(text, line)))
            except ValidationError as exc:
                first = batch[0][0] if batch else line
                raise _stopped(str(exc), first, loaded) from None
            if len(batch) >= batch_size:
                _store(service, batch, actor, loaded)
                batch = []
                progress.update(bar, stored=len(loaded.results))
        if batch:
            _store(service, batch, actor, loaded)
    _report(loaded, as_json)


def _size(file: IO[bytes]) -> int | None:
    """Bytes in ``file`` if it is a regular file (the progress bar's total), else None."""
    try:
        info = os.fstat(file.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def _report(loaded: Loaded, as_json: bool) -> None:
    existing = len(loaded.results) - loaded.created
    if as_json:
        print_json(
            {
                "created": loaded.created,
                "existing": existing,
                "tasks": [{"line": line, **result.to_dict()} for line, result in loaded.results],
            }
        )
        return
    message = f"enqueued {loaded.created} task(s) from {loaded.lines} line(s)"
    if existing:
        message += f"; {existing} line(s) returned a live task holding their dedup key"
    click.echo(message)
