"""What a database outage looks like on the request path, and how it is logged: one line per
cause and interval (with how many were suppressed), not a traceback per request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# A deadline that passed, a refused or reset connection, an error from the driver (a
# cancelled statement, a server shutting down), no pooled connection in time.
DATABASE_ERRORS = (TimeoutError, OSError, DBAPIError, PoolTimeoutError)

T = TypeVar("T")


async def within(seconds: float, work: Awaitable[T]) -> T:
    """`work`'s result, or TimeoutError after `seconds`. Not `asyncio.timeout`: that waits for
    the cancelled work to clean up, and closing a connection to a frozen server takes as long
    as the driver's own timeouts; the cancelled work finishes in the background."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        task.add_done_callback(_discard_outcome)
        raise TimeoutError
    return task.result()


def _discard_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved


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
