"""The JSON log line: its time, its `extra=` fields, and tracebacks with cheap records."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from chatservice.observability.logs import JsonFormatter, make_records_cheap


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _record(created: float, **extra: object) -> logging.LogRecord:
    record = logging.getLogger("chatservice.test").makeRecord(
        "chatservice.test", logging.INFO, __file__, 1, "request", (), None, extra=extra
    )
    record.created = created
    return record


@pytest.mark.parametrize(
    "moments",
    [
        # Within one second, then the next (the formatter keeps the second it formatted).
        (1_764_000_000.0, 1_764_000_000.0004, 1_764_000_000.9996, 1_764_000_001.0),
        # Years apart, backwards, and a leap day.
        (1_709_208_000.123, 946_684_799.999, 2_000_000_000.5),
    ],
)
def test_the_time_is_utc_to_the_millisecond_as_isoformat_writes_it(
    moments: tuple[float, ...],
) -> None:
    formatter = JsonFormatter()
    for created in moments:
        line = json.loads(formatter.format(_record(created)))
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert line["time"] == expected


def test_extra_fields_and_filter_added_ones_are_in_the_line_and_nothing_standard() -> None:
    record = _record(1_764_000_000.0, route="/api/v1/chat/completions", status=200)
    record.suppressed = 3  # as log_sampling's filter adds it, after makeRecord
    line = json.loads(JsonFormatter().format(record))
    assert line["route"] == "/api/v1/chat/completions"
    assert line["status"] == 200
    assert line["suppressed"] == 3
    assert line["message"] == "request"
    for standard in ("pathname", "lineno", "thread", "process", "args", "msecs"):
        assert standard not in line


def test_cheap_records_still_carry_the_traceback_with_its_file_and_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    make_records_cheap()
    logger = logging.getLogger("chatservice.test.cheap")
    handler = _Keep()
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError("the detail")
        except RuntimeError:
            logger.exception("failed", extra={"request_id": "r1"})
    finally:
        logger.removeHandler(handler)
    line = json.loads(JsonFormatter().format(handler.records[0]))
    assert line["request_id"] == "r1"
    assert "RuntimeError: the detail" in line["traceback"]
    assert f'File "{__file__}"' in line["traceback"]
    assert "process" not in line
