"""JSON log lines, one object per line, with whatever `extra=` fields the caller passed."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from chatservice.observability.context import current_record
from chatservice.observability.log_sampling import RepeatFilter

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI copy of the message
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
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
        for key, value in vars(record).items():
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
