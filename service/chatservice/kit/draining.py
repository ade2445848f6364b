"""Readiness turns 503 as soon as SIGTERM arrives, while the server finishes what it has."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

from chatservice.runtime import Runtime


def mark_draining_on_sigterm(runtime: Runtime) -> Callable[[], None]:
    """Put a SIGTERM handler in front of the server's (uvicorn's graceful shutdown) that
    marks the runtime as draining first and arranges for open streams to end with an error
    event before the grace period runs out. Returns a function that restores the old handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signals can only be handled on the main thread
    previous = signal.getsignal(signal.SIGTERM)
    loop = asyncio.get_running_loop()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        if not runtime.draining:
            runtime.streams.schedule_cut(loop, runtime.settings.graceful_timeout)
        runtime.draining = True
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:  # nobody else handles it: terminate as before
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
