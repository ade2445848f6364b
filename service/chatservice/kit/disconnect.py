"""Cancelling a request's work when its client goes away: one watcher task per request.

uvicorn does not raise when a response is sent to a client that has left (it drops the
message), so without a watcher a stream would be read from its upstream to the end for
nobody. The same watcher covers the wait for the upstream's answer and, for a stream, every
write after it (see event_stream.py): Starlette's StreamingResponse would start a task group
and a listener of its own for each stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.types import Receive

T = TypeVar("T")


class ClientDisconnectedError(Exception):
    """The client went away before the answer was ready; there is nobody to answer."""


class DisconnectWatch:
    """Cancels the task that created it as soon as the client disconnects, until stopped."""

    __slots__ = ("_task", "_watcher", "disconnected")

    def __init__(self, receive: Receive) -> None:
        task = asyncio.current_task()
        assert task is not None  # noqa: S101 - always created in a request's task
        self._task = task
        self.disconnected = False
        self._watcher = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Receive) -> None:
        # The body was read already: what comes next is the disconnect.
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True
        self._task.cancel()

    def stop(self) -> None:
        # No await before the caller goes on: a cancellation can only reach the task while
        # it waits, so none arrives after this.
        self._watcher.cancel()

    def took_back(self) -> bool:
        """After a CancelledError: True if this watch sent it (the client left), and then
        the task is no longer counted as cancelled; False for any other cancellation."""
        if not self.disconnected:
            return False
        self._task.uncancel()
        return True

    async def guard(self, work: Awaitable[T]) -> T:
        """Await `work`; `ClientDisconnectedError` if this watch cancelled it."""
        try:
            return await work
        except asyncio.CancelledError:
            if self.took_back():
                raise ClientDisconnectedError from None
            raise


async def cancel_on_disconnect(receive: Receive, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so the upstream call) if the client disconnects;
    `ClientDisconnectedError` then."""
    watch = DisconnectWatch(receive)
    try:
        return await watch.guard(work)
    finally:
        watch.stop()
