"""A timeout on every read of a long response, without a timer per read.

`asyncio.timeout` around each read schedules a timer and cancels it again: about 5 µs, as much
as the rest of relaying one stream event. A `ReadTimer` keeps at most one timer. When it fires
it looks at the read in progress: one that began less than `timeout` ago re-arms it for the
moment that read would overrun, and with no read in progress the next read arms it. A read
itself only notes when it began.

As with `asyncio.timeout`, an overrun cancels the reading task and surfaces as `TimeoutError`
from the read; a cancellation from anywhere else stays a cancellation. Time between reads (the
client being slow to take what was read) does not count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

_CLOCK_SLACK = 0.001


class ReadTimer:
    __slots__ = (
        "_began", "_cancelling", "_deadline", "_expired", "_handle", "_loop", "_task", "_timeout",
    )  # fmt: skip

    def __init__(self, timeout: float, deadline: float) -> None:
        """`timeout`: the longest a read may wait; `deadline`: a `time.monotonic()` no read
        may wait beyond."""
        self._loop = asyncio.get_running_loop()
        self._timeout = timeout
        # The loop's clock need not be time.monotonic() (uvloop has its own).
        self._deadline = self._loop.time() + (deadline - time.monotonic())
        self._handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[object] | None = None
        self._began = 0.0
        self._cancelling = 0
        self._expired = False

    async def read(self, read: Callable[[], Awaitable[T]]) -> T:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - reads happen in a task
        self._began = self._loop.time()
        self._cancelling = task.cancelling()
        self._task = task
        if self._handle is None:
            self._handle = self._loop.call_at(self._due(), self._fire)
        try:
            return await read()
        except asyncio.CancelledError:
            if self._expired:
                self._expired = False
                # Ours alone: the read timed out; with another cancellation pending, that wins.
                if task.uncancel() <= self._cancelling:
                    raise TimeoutError from None
            raise
        finally:
            self._task = None

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _due(self) -> float:
        return min(self._began + self._timeout, self._deadline)

    def _fire(self) -> None:
        self._handle = None
        if self._task is None:
            return  # between reads: the next one arms the timer again
        due = self._due()
        # A timer may fire a little early (uvloop's clock counts milliseconds): within that,
        # it is due, rather than re-armed again and again until the clock catches up.
        if self._loop.time() >= due - _CLOCK_SLACK:
            self._expired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(due, self._fire)
