"""Streams still running when the graceful-shutdown time runs out end with an error event.

gunicorn kills a worker `graceful_timeout` seconds after SIGTERM; a stream cut by that kill
ends in a transport error the client cannot tell from a network fault. Shortly before, every
open stream is interrupted and sends one `service_unavailable` event instead.
"""

from __future__ import annotations

import asyncio

from chatservice.errors import ServiceUnavailableError

SHUTDOWN_MESSAGE = "The server is shutting down and ended this stream; retry the request."


class OpenStreams:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[object]] = set()
        self.cutting = False

    def add(self, task: asyncio.Task[object]) -> None:
        self._tasks.add(task)

    def discard(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)

    def cut_all(self) -> None:
        self.cutting = True
        for task in self._tasks:
            task.cancel()

    def schedule_cut(self, loop: asyncio.AbstractEventLoop, graceful_timeout: float) -> None:
        """Called from the SIGTERM handler: cut the streams just before the kill."""
        delay = max(graceful_timeout * 0.9, graceful_timeout - 5.0)
        loop.call_soon_threadsafe(loop.call_later, delay, self.cut_all)


def shutdown_error() -> ServiceUnavailableError:
    return ServiceUnavailableError(SHUTDOWN_MESSAGE, code="server_shutting_down")
