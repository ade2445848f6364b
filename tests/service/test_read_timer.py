"""The upstream reads' timeout (one timer for all of a response's reads): a read that waits
too long fails, however the reads before it went, and nothing else does."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvloop

from chatservice.kit.read_timer import ReadTimer


def _after(seconds: float) -> asyncio.Future[bytes]:
    future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_later(seconds, future.set_result, b"data")
    return future


async def test_a_read_that_waits_longer_than_the_timeout_fails_in_time() -> None:
    timer = ReadTimer(0.05, time.monotonic() + 60)
    assert await timer.read(lambda: _after(0.01)) == b"data"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await timer.read(lambda: _after(5))
    assert 0.04 <= time.monotonic() - started < 0.5
    timer.close()


async def test_many_quick_reads_outlast_the_timeout_without_failing() -> None:
    # One timer for all reads must not become one timeout for the whole response.
    timer = ReadTimer(0.05, time.monotonic() + 60)
    started = time.monotonic()
    for _ in range(15):
        await timer.read(lambda: _after(0.02))
    assert time.monotonic() - started > 0.25
    timer.close()


async def test_time_between_reads_does_not_count() -> None:
    timer = ReadTimer(0.05, time.monotonic() + 60)
    for _ in range(3):
        await timer.read(lambda: _after(0.01))
        await asyncio.sleep(0.1)  # the client is slow to take what was read
    timer.close()


async def test_the_deadline_cuts_a_read_within_its_timeout() -> None:
    timer = ReadTimer(10, time.monotonic() + 0.1)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await timer.read(lambda: _after(5))
    assert time.monotonic() - started < 0.5
    timer.close()


async def test_a_cancellation_from_elsewhere_stays_one() -> None:
    timer = ReadTimer(0.05, time.monotonic() + 60)
    reading = asyncio.create_task(timer.read(lambda: _after(5)))
    await asyncio.sleep(0.01)
    reading.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reading
    timer.close()


async def test_a_timed_out_read_leaves_the_task_uncancelled() -> None:
    timer = ReadTimer(0.02, time.monotonic() + 60)
    with pytest.raises(TimeoutError):
        await timer.read(lambda: _after(5))
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0
    await asyncio.sleep(0.03)  # a later await is not cancelled by what is left of the timer
    timer.close()


def test_on_uvloop_too() -> None:
    """The workers' loop, whose clock is not time.monotonic() and counts milliseconds."""

    async def scenario() -> float:
        timer = ReadTimer(0.05, time.monotonic() + 60)
        for _ in range(5):
            await timer.read(lambda: _after(0.02))
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await timer.read(lambda: _after(5))
        timer.close()
        return time.monotonic() - started

    assert 0.04 <= uvloop.run(scenario()) < 0.5
