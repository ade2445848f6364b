"""What a database outage looks like on the request path, and how it is logged: one line per
cause and interval (with how many were suppressed), not a traceback per request."""

from __future__ import annotations

import logging
import time

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# A deadline that passed, a refused or reset connection, an error from the driver (a
# cancelled statement, a server shutting down), no pooled connection in time.
DATABASE_ERRORS = (TimeoutError, OSError, DBAPIError, PoolTimeoutError)


def describe(exc: BaseException) -> str:
    # The class names only: driver messages can carry host names and user names.
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc).__name__}({type(exc.orig).__name__})"
    return type(exc).__name__


class ThrottledLog:
    def __init__(self, logger: logging.Logger, interval: float) -> None:
        self._logger = logger
        self._interval = interval
        # (message, cause) → (when last logged, suppressed since); causes are class names,
        # messages fixed strings, so this stays small.
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}

    def warning(self, message: str, *, cause: BaseException) -> None:
        self._log(logging.WARNING, message, cause)

    def error(self, message: str, *, cause: BaseException) -> None:
        self._log(logging.ERROR, message, cause)

    def _log(self, level: int, message: str, cause: BaseException) -> None:
        key = (message, describe(cause))
        now = time.monotonic()
        last, suppressed = self._seen.get(key, (None, 0))
        if last is not None and now - last < self._interval:
            self._seen[key] = (last, suppressed + 1)
            return
        self._seen[key] = (now, 0)
        self._logger.log(level, message, extra={"cause": key[1], "suppressed": suppressed})


database_log = ThrottledLog(logging.getLogger("chatservice.database"), interval=30.0)
