"""The JSON and text log formats: fields, ids from `extra` and from the running run's
context, error details, and configuring them more than once."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from datetime import datetime
from typing import Any

import pytest

from taskrt import logs
from taskrt.context import TaskContext
from taskrt.records import ClaimedRun, LostRun, RunFinish
from tests.support.runs import claimed_run


def _run(trace_id: str | None = "trace-1") -> ClaimedRun:
    return claimed_run(
        "mail.send", queue="high", attempt=2, max_retries=3, trace_id=trace_id, retry_count=1
    )


def _record(message: str = "hello", **extra: Any) -> logging.LogRecord:
    logger = logging.getLogger("taskrt.test")
    return logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, (), None, extra=extra)


def _json(record: logging.LogRecord, service: logs.Service = "worker") -> dict[str, Any]:
    line = logs.JsonFormatter(service).format(record)
    assert "\n" not in line
    return dict(json.loads(line))


def test_a_plain_line_has_the_base_fields_only() -> None:
    logger = logging.getLogger("taskrt.test")
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "plain %s", ("words",), None)
    line = _json(record)
    assert set(line) == {"timestamp", "level", "service", "logger", "message"}
    assert line["level"] == "INFO"
    assert line["service"] == "worker"
    assert line["logger"] == "taskrt.test"
    assert line["message"] == "plain words"
    assert line["timestamp"].endswith("Z")
    assert datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).tzinfo is not None


def test_a_line_inside_a_run_carries_its_ids() -> None:
    run = _run()
    token = logs.current_run.set((run, "worker-7"))
    try:
        line = _json(_record())
    finally:
        logs.current_run.reset(token)
    assert line["trace_id"] == "trace-1"
    assert line["task_id"] == str(run.task_id)
    assert line["run_id"] == str(run.run_id)
    assert line["attempt"] == 2
    assert line["worker_id"] == "worker-7"
    assert line["queue"] == "high"
    assert line["task_type"] == "mail.send"


def test_explicit_run_fields_win_over_the_context_of_another_run() -> None:
    running, other = _run("trace-running"), _run(trace_id=None)
    token = logs.current_run.set((running, "w"))
    try:
        line = _json(_record(**logs.run_fields(other, "w")))
    finally:
        logs.current_run.reset(token)
    assert line["run_id"] == str(other.run_id)
    assert "trace_id" not in line  # not borrowed from the running run


def test_a_request_trace_id_is_used_outside_runs() -> None:
    token = logs.current_trace_id.set("req-123")
    try:
        line = _json(_record(), "api")
    finally:
        logs.current_trace_id.reset(token)
    assert line["trace_id"] == "req-123"
    assert line["service"] == "api"


def test_the_task_context_logger_fields_reach_the_line() -> None:
    ctx = TaskContext(
        task_id=uuid.uuid4(),
        run_id=uuid.uuid4(),
        attempt=1,
        task_name="example.word_count",
        queue="default",
        worker_id=uuid.uuid4(),
        trace_id="abc",
    )
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("taskrt.task.example.word_count")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        ctx.logger.info("counted %d words", 3, extra={"words": 3})
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    line = _json(records[0])
    assert line["message"] == "counted 3 words"
    assert line["trace_id"] == "abc"
    assert line["task_type"] == "example.word_count"
    assert line["worker_id"] == str(ctx.worker_id)
    assert line["words"] == 3  # other extra fields are kept


def test_an_exception_becomes_the_error_field() -> None:
    logger = logging.getLogger("taskrt.test")
    try:
        raise ValueError("bad thing")
    except ValueError:
        record = logger.makeRecord(
            logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = _json(record)
    assert line["error"]["type"] == "ValueError"
    assert line["error"]["message"] == "bad thing"
    assert "Traceback" in line["error"]["traceback"]


def test_error_fields_from_extra_become_the_error_field() -> None:
    line = _json(
        _record(error_type="pkg.Boom", error_message="boom", error_traceback="Traceback ...")
    )
    assert line["error"] == {"type": "pkg.Boom", "message": "boom", "traceback": "Traceback ..."}
    assert "error_type" not in line


def test_outcome_lines_name_retries_and_dead_letters() -> None:
    run = _run()
    retry = RunFinish(
        run=run,
        status="failed",
        error_type="E",
        error_message="m",
        reason="error",
        retry_delay=2.0,
    )
    dead = RunFinish(run=run, status="failed", error_type="E", reason="retries_exhausted")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("taskrt.test.outcomes")
    logger.setLevel(logging.INFO)
    logger.addHandler(Keep())
    logs.log_outcomes(logger, [retry, dead, RunFinish(run=run, status="succeeded")], "w")
    retry_line, dead_line = (_json(r) for r in records)  # the success is DEBUG: not written
    assert retry_line["level"] == "INFO"
    assert "attempt 3 follows in 2.0 s" in retry_line["message"]
    assert retry_line["error"]["type"] == "E"
    assert dead_line["level"] == "WARNING"
    assert "dead-lettered" in dead_line["message"]
    assert dead_line["trace_id"] == "trace-1"


def test_lost_run_lines_carry_the_task_trace_id_and_say_what_follows() -> None:
    task_id, run_id = uuid.uuid4(), uuid.uuid4()
    lost = [
        LostRun(run_id, task_id, "mail.send", "high", 2, None, "retry", "trace-9"),
        LostRun(run_id, task_id, "mail.send", "high", 3, None, "dead_letter", "trace-9"),
        LostRun(run_id, task_id, "mail.send", "high", 1, None, "cancelled", None),
    ]
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("taskrt.test.lost")
    logger.addHandler(Keep())
    logs.log_lost(logger, lost)
    retry, dead, cancelled = (_json(r) for r in records)
    assert all(line["level"] == "WARNING" for line in (retry, dead, cancelled))
    assert "lost (lease expired); attempt 3 follows" in retry["message"]
    assert "dead-lettered after attempt 3" in dead["message"]
    assert "cancelled" in cancelled["message"]
    for line in (retry, dead):
        assert line["trace_id"] == "trace-9"
        assert line["task_id"] == str(task_id)
        assert line["run_id"] == str(run_id)
        assert line["task_type"] == "mail.send"
        assert line["queue"] == "high"
        assert line["error"]["type"] == "LeaseExpired"
    assert "trace_id" not in cancelled  # a task without a trace id gets no empty field


def test_text_lines_put_the_ids_after_the_message() -> None:
    run = _run()
    text = logs.TextFormatter().format(_record("hello", **logs.run_fields(run, "w")))
    head = text.splitlines()[0]
    assert " INFO taskrt.test: hello [" in head
    assert f"task_id={run.task_id}" in head
    assert "trace_id=trace-1" in head


def test_configuring_twice_leaves_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    before = (list(root.handlers), root.level)
    try:
        logs.configure_logging(None, "cli", log_format="text", level="WARNING")
        logs.configure_logging(None, "worker", log_format="json", level="INFO")
        ours = [h for h in root.handlers if isinstance(h, logs._StderrHandler)]
        assert len(ours) == 1
        assert root.level == logging.INFO
        logging.getLogger("taskrt.test").info("to stderr")
        err = capsys.readouterr().err
        assert json.loads(err.strip().splitlines()[-1])["message"] == "to stderr"
    finally:
        for handler in list(root.handlers):
            if handler not in before[0]:
                root.removeHandler(handler)
        root.setLevel(before[1])
