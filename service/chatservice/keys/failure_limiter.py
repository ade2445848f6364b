"""Failed authentications per client address: a token bucket each, in a bounded LRU."""

from __future__ import annotations

import math
import time
from collections import OrderedDict


class FailureLimiter:
    """Each address may fail `burst` times, regaining one try every `60 / burst` seconds.

    O(1) per request; at most `max_clients` addresses are remembered (the least recently
    failing are forgotten first, which only ever gives an address its full burst back).
    """

    def __init__(self, burst: int, max_clients: int) -> None:
        self._burst = burst
        self._refill_per_second = burst / 60.0
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    @property
    def retry_after(self) -> int:
        return math.ceil(1 / self._refill_per_second)

    def _tokens(self, client: str, now: float) -> float:
        tokens, updated = self._buckets.get(client, (float(self._burst), now))
        return min(float(self._burst), tokens + (now - updated) * self._refill_per_second)

    def allows(self, client: str | None) -> bool:
        if client is None:
            return True
        return self._tokens(client, time.monotonic()) >= 1

    def record(self, client: str | None) -> None:
        if client is None:
            return
        now = time.monotonic()
        self._buckets[client] = (max(0.0, self._tokens(client, now) - 1), now)
        self._buckets.move_to_end(client)
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
