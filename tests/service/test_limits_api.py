"""The limits API's upsert: on real PostgreSQL concurrent first PUTs of one subject all succeed
and leave one row that reads back as one of the values written; on SQLite a PUT inserts, the
next updates."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from chatservice.accounting.tables import SubjectLimits
from chatservice.main import create_app
from tests.service.accounting_db import new_key
from tests.service.harness import AUTH, make_settings, serve

PUTS = 20


@pytest.fixture
async def http(database: str) -> AsyncIterator[httpx.AsyncClient]:
    # A pool as large as the burst, so that the PUTs really run side by side.
    settings = make_settings(database, db_pool_size=PUTS)
    async with serve(create_app(settings)) as client:
        yield client


async def _rows(database: str, subject_id: uuid.UUID) -> int:
    engine = create_async_engine(database)
    try:
        async with engine.connect() as connection:
            count = await connection.scalar(
                select(func.count())
                .select_from(SubjectLimits)
                .where(SubjectLimits.subject_id == subject_id)
            )
    finally:
        await engine.dispose()
    return count or 0


async def test_concurrent_first_puts_of_one_subject_all_succeed(
    http: httpx.AsyncClient, database: str
) -> None:
    _, key_id = await new_key(database)
    path = f"/api/v1/limits/key/{key_id}"
    bodies = [{"requests_per_minute": n, "max_budget_usd": float(n)} for n in range(1, PUTS + 1)]
    responses = await asyncio.gather(*(http.put(path, json=b, headers=AUTH) for b in bodies))
    assert [r.status_code for r in responses] == [200] * PUTS, [r.text for r in responses]
    assert await _rows(database, key_id) == 1

    read = [(await http.get(path, headers=AUTH)).json() for _ in range(3)]
    assert read[0] == read[1] == read[2]
    written = read[0]
    assert written["max_budget_usd"] == written["requests_per_minute"], "a mix of two PUTs"
    assert {"requests_per_minute": written["requests_per_minute"],
            "max_budget_usd": written["max_budget_usd"]} in bodies  # fmt: skip


async def test_on_sqlite_the_first_put_inserts_and_the_next_updates(sqlite_url: str) -> None:
    path = f"/api/v1/limits/team/{uuid.uuid4()}"
    async with serve(create_app(make_settings(sqlite_url))) as client:
        for rpm in (5, 7):
            put = await client.put(path, json={"requests_per_minute": rpm}, headers=AUTH)
            assert put.status_code == 200, put.text
        read = (await client.get(path, headers=AUTH)).json()
    assert (read["requests_per_minute"], read["max_budget_usd"]) == (7, None)
