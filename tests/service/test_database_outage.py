"""A database that hangs or is down: key lookups fail fast with 503 and `Retry-After`, the log
gets a line per cause instead of a traceback per request, and cached keys keep working.

Against a PostgreSQL server of its own, frozen with SIGSTOP and stopped for real.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import create_async_engine

from chatservice.db.migrate import upgrade
from chatservice.db.outage import database_log
from chatservice.keys.service import create_key
from chatservice.keys.tables import ApiKey
from chatservice.main import create_app
from tests.service.harness import make_settings, serve
from tests.service.postgres import PostgresServer, running_postgres

MODELS = "/api/v1/models"
TTL = 0.5
BACK_OFF = 1.5


@pytest.fixture(scope="module")
def own_postgres(pg_bindir: Path) -> Iterator[PostgresServer]:
    with running_postgres(pg_bindir) as server:
        upgrade(server.url())
        yield server


@pytest.fixture
async def http(own_postgres: PostgresServer) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        own_postgres.url(),
        key_cache_ttl=TTL,
        negative_key_cache_ttl=TTL,
        db_statement_timeout=1,
        db_request_timeout=1.5,
        db_connect_timeout=1,
        db_pool_timeout=1,
        db_retry_after=1,
    )
    async with serve(create_app(settings)) as client:
        yield client


async def _new_key(server: PostgresServer) -> str:
    engine = create_async_engine(server.url())
    try:
        async with engine.begin() as connection:
            from sqlalchemy.ext.asyncio import AsyncSession

            async with AsyncSession(bind=connection) as session:
                plaintext, _ = await create_key(session, name="outage")
                await session.flush()
    finally:
        await engine.dispose()
    return plaintext


async def _revoke_all(server: PostgresServer) -> None:
    engine = create_async_engine(server.url())
    try:
        async with engine.begin() as connection:
            await connection.execute(update(ApiKey).values(revoked_at=datetime.now(UTC)))
    finally:
        await engine.dispose()


async def _get(http: httpx.AsyncClient, key: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await http.get(MODELS, headers={"Authorization": f"Bearer {key}"})
    return response, time.monotonic() - started


def _assert_unavailable(response: httpx.Response, elapsed: float) -> None:
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "service_unavailable"
    assert int(response.headers["retry-after"]) >= 1
    assert elapsed < 5


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING)
    database_log._seen.clear()  # each test starts with no cause seen yet
    return caplog


async def test_a_frozen_database_answers_503_fast_and_cached_keys_keep_working(
    own_postgres: PostgresServer,
    http: httpx.AsyncClient,
    log: pytest.LogCaptureFixture,
) -> None:
    cached, uncached = await _new_key(own_postgres), await _new_key(own_postgres)
    assert (await _get(http, cached))[0].status_code == 200
    await asyncio.sleep(TTL * 2)  # the cached entry is past its TTL: served only as a fallback

    own_postgres.signal_all(signal.SIGSTOP)
    try:
        _assert_unavailable(*await _get(http, uncached))
        _assert_unavailable(*await _get(http, "sk-unknown-" + "0" * 40))
        for _ in range(10):
            response, elapsed = await _get(http, cached)
            assert response.status_code == 200
            assert elapsed < 5
        for index in range(10):
            _assert_unavailable(*await _get(http, f"sk-unknown-{index}"))
    finally:
        own_postgres.signal_all(signal.SIGCONT)

    outage = [r for r in log.records if r.name == "chatservice.database"]
    assert len(outage) == 1, [r.getMessage() for r in outage]
    assert all(r.exc_info is None for r in log.records)
    assert not [r for r in log.records if r.name == "chatservice.errors"]

    # Once the database answers again (and the back-off of `Retry-After` seconds is over),
    # a revoked key stops within the TTL.
    await _revoke_all(own_postgres)
    await asyncio.sleep(BACK_OFF + TTL)
    assert (await _get(http, cached))[0].status_code == 401
    assert (await _get(http, uncached))[0].status_code == 401


async def test_a_stopped_database_answers_503_and_recovers(
    own_postgres: PostgresServer,
    http: httpx.AsyncClient,
    log: pytest.LogCaptureFixture,
) -> None:
    cached, uncached = await _new_key(own_postgres), await _new_key(own_postgres)
    assert (await _get(http, cached))[0].status_code == 200
    await asyncio.sleep(BACK_OFF)  # past the previous test's back-off
    own_postgres.stop()
    try:
        for _ in range(5):
            _assert_unavailable(*await _get(http, uncached))
        assert (await _get(http, cached))[0].status_code == 200
    finally:
        own_postgres.start()
    await asyncio.sleep(BACK_OFF)
    assert (await _get(http, uncached))[0].status_code == 200
    assert not [r for r in log.records if r.name == "chatservice.errors"]
