"""Rate limiting of repeated warnings and errors, so an outage logs a few lines, not a flood.

An upstream that is down, or a bug hit by every request, would otherwise log the same line
(and traceback) thousands of times a minute: that buries what is new and costs disk and
money in the log pipeline. Info lines (one access line per request) are never dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

# Distinct kinds of line tracked at once; the least recently seen is forgotten beyond it.
MAX_KINDS = 512


@dataclass
class _Window:
    started: float
    passed: int = 0
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """Passes the first `burst` records of one kind per `window` seconds and drops the rest.

    A kind is the logger, the message template (before its arguments are filled in) and the
    exception type. The first record of a kind let through after some were dropped carries
    `suppressed`: how many were dropped since the last one that was written.
    """

    def __init__(
        self,
        burst: int = 10,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self._clock = clock
        self._kinds: OrderedDict[tuple[str, str, str], _Window] = OrderedDict()
        # Handlers call filters outside their own lock, from any thread.
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or self.burst <= 0:
            return True
        exc_type = record.exc_info[0] if record.exc_info else None
        kind = (record.name, str(record.msg), exc_type.__name__ if exc_type else "")
        now = self._clock()
        with self._lock:
            window = self._kinds.get(kind)
            if window is None or now - window.started >= self.window:
                suppressed = window.suppressed if window is not None else 0
                window = self._kinds[kind] = _Window(started=now)
                if suppressed:
                    window.suppressed = suppressed  # reported on the first line let through
            self._kinds.move_to_end(kind)
            if len(self._kinds) > MAX_KINDS:
                self._kinds.popitem(last=False)
            if window.passed >= self.burst:
                window.suppressed += 1
                return False
            window.passed += 1
            if window.suppressed:
                record.suppressed = window.suppressed
                window.suppressed = 0
        return True
