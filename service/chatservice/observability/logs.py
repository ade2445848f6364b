"""JSON log lines, one object per line, with whatever `extra=` fields the caller passed."""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from typing import Any

import orjson

from chatservice.observability.context import current_record
from chatservice.observability.log_sampling import RepeatFilter

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_INITIAL = tuple(vars(logging.makeLogRecord({})))
_STANDARD = frozenset(_INITIAL) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI copy of the message
}


def make_records_cheap() -> None:
    """Stop filling in what no JSON line shows: the caller's file and line (a walk up the
    stack), the thread's and process's names. The logging HOWTO's "Optimization" section
    names these switches; they save ~1 µs of the ~13 every log line costs."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


class _SecondStamp:
    """`2026-12-04T21:40:01.123+00:00` (UTC, milliseconds): the part before the milliseconds
    is formatted once a second (datetime's isoformat was a third of a line's formatting)."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, created: float) -> str:
        # Rounded to the microsecond first, as datetime.fromtimestamp does (a float's .123
        # is .12299...).
        fraction, whole = math.modf(created)
        second, micros = int(whole), round(fraction * 1e6)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._prefix}.{micros // 1000:03d}+00:00"


class JsonFormatter(logging.Formatter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stamp = _SecondStamp()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = current_record()
        if request is not None:
            # Every line logged while serving a request carries its id and, once known, its
            # outcome, whoever logged it (the upstream client, SQLAlchemy, uvicorn).
            entry["request_id"] = request.request_id
            if request.outcome is not None:
                entry["outcome"] = request.outcome
        # `extra=` fields come after the attributes LogRecord's constructor sets (makeRecord
        # adds them then): skipping those is most of the work of finding them.
        for key, value in itertools.islice(vars(record).items(), len(_INITIAL), None):
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        # orjson: at INFO every request logs a line, and json.dumps with `default` builds a
        # new encoder per call, half of this method's time.
        try:
            return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # what orjson cannot encode (integers beyond 64 bits, ...)
            return json.dumps(entry, default=str)


def logging_config(level: str, repeats_per_minute: int = 10) -> dict[str, Any]:
    """A dictConfig that sends every logger (gunicorn's and uvicorn's too) through JSON, with
    repeated warnings and errors limited to `repeats_per_minute` lines of each kind."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "filters": {"repeats": {"()": RepeatFilter, "burst": repeats_per_minute, "window": 60.0}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "filters": ["repeats"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level.upper(), "handlers": ["stderr"], "propagate": False},
            # Access lines come from our own middleware, which knows the route template.
            "gunicorn.access": {"level": "WARNING", "propagate": False},
            "uvicorn.access": {"level": "WARNING", "propagate": False},
            "alembic": {"level": "WARNING"},
        },
    }
