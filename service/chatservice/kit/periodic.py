"""A background task that repeats one piece of work at an interval for as long as a block
runs: the key-invalidation watcher and DNS discovery are each one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

log = logging.getLogger(__name__)


async def _repeat(work: Callable[[], Awaitable[None]], interval: float, name: str) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await work()
        except Exception:  # the task must outlive any one round, whatever broke it
            log.exception("%s failed", name)


@contextlib.asynccontextmanager
async def repeating(
    work: Callable[[], Awaitable[None]], interval: float, name: str
) -> AsyncIterator[None]:
    """Run `work` every `interval` seconds in the background until the block ends."""
    task = asyncio.create_task(_repeat(work, interval, name), name=name)
    try:
        yield
    finally:
        task.cancel()
        # Bounded: a round stuck on a frozen database or nameserver is left to finish alone.
        await asyncio.wait({task}, timeout=1.0)
