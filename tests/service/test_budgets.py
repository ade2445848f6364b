"""Budgets: a key, user or team past its spend for the period gets 429 `insufficient_quota`
before any upstream call; the period starts on the UTC calendar, so yesterday's spend does not
count against today's budget; a soft budget is counted, not enforced."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import create_async_engine

from chatservice.accounting.budgets import period_start
from chatservice.accounting.tables import UsageEvent
from chatservice.config import ModelRoute
from chatservice.keys.tables import ApiKey
from chatservice.main import create_app
from chatservice.observability import metrics
from tests.service.accounting_db import new_key, wait_for_rows
from tests.service.harness import AUTH, CHAT, make_settings, serve
from tests.service.stub_upstream import StubUpstream

# The stub's answers use 10 tokens: at 100 000 USD per million each costs 1 USD.
PRICE = 100_000.0
BODY = {"model": "upstream", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def http(database: str, upstream: StubUpstream) -> AsyncIterator[httpx.AsyncClient]:
    route = ModelRoute(
        name="upstream",
        backend="openai",
        base_url=upstream.base_url,
        upstream_model="stub-model-v1",
        input_price_per_million_tokens=PRICE,
        output_price_per_million_tokens=PRICE,
    )
    settings = make_settings(database, upstream, models=[route], ledger_flush_interval=0.1)
    async with serve(create_app(settings)) as client:
        yield client


async def _budget(
    http: httpx.AsyncClient, scope: str, subject: uuid.UUID, **budget: object
) -> None:
    response = await http.put(f"/api/v1/limits/{scope}/{subject}", json=budget, headers=AUTH)
    assert response.status_code == 200, response.text


async def test_a_request_past_the_budget_gets_insufficient_quota_before_the_upstream(
    http: httpx.AsyncClient, database: str, upstream: StubUpstream
) -> None:
    key, key_id = await new_key(database)
    await _budget(http, "key", key_id, max_budget_usd=3, budget_period="daily")
    member = {"Authorization": f"Bearer {key}"}
    statuses = [(await http.post(CHAT, json=BODY, headers=member)).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    refused = await http.post(CHAT, json=BODY, headers=member)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"
    assert refused.json()["error"]["type"] == "insufficient_quota"
    assert len(upstream.requests) == 3, "the refused request reached the upstream"
    rows = await wait_for_rows(database, 3, key_id=key_id)
    assert sum(row.cost_usd for row in rows) == pytest.approx(3.0)

    # Raised: served again.
    await _budget(http, "key", key_id, max_budget_usd=10, budget_period="daily")
    assert (await http.post(CHAT, json=BODY, headers=member)).status_code == 200


async def test_the_period_resets_on_the_utc_calendar_and_a_user_budget_covers_its_keys(
    http: httpx.AsyncClient, database: str
) -> None:
    key, key_id = await new_key(database)
    # The key's user spent 100 USD yesterday.
    engine = create_async_engine(database)
    async with engine.begin() as connection:
        owner = select(ApiKey.user_id).where(ApiKey.id == key_id)
        user_id = (await connection.execute(owner)).scalar_one()
        assert user_id is not None
        await connection.execute(
            insert(UsageEvent).values(
                id=uuid.uuid4(), created_at=datetime.now(UTC) - timedelta(days=1, hours=1),
                request_id="yesterday", key_id=key_id, user_id=user_id, team_id=None,
                model="upstream", upstream="stub-model-v1", stream=False, prompt_tokens=0,
                completion_tokens=0, total_tokens=0, tokens_estimated=False, outcome="success",
                status=200, latency_ms=1.0, time_to_first_token_ms=None, cost_usd=100.0,
            )
        )  # fmt: skip
    await engine.dispose()
    member = {"Authorization": f"Bearer {key}"}
    await _budget(http, "user", user_id, max_budget_usd=50, budget_period="daily")
    assert (await http.post(CHAT, json=BODY, headers=member)).status_code == 200
    await _budget(http, "user", user_id, max_budget_usd=50, budget_period="none")
    refused = await http.post(CHAT, json=BODY, headers=member)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "insufficient_quota"


async def test_a_soft_budget_is_counted_not_enforced(
    http: httpx.AsyncClient, database: str
) -> None:
    key, key_id = await new_key(database)
    await _budget(http, "key", key_id, soft_budget_usd=1, budget_period="monthly")
    soft = metrics.child(metrics.OVER_BUDGET, "key", "soft")
    before = soft._value.get()
    member = {"Authorization": f"Bearer {key}"}
    statuses = [(await http.post(CHAT, json=BODY, headers=member)).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert soft._value.get() - before == 2  # the second and third came past 1 USD


def test_periods_start_on_the_utc_calendar() -> None:
    thursday = datetime(2026, 12, 3, 10, 30, tzinfo=UTC)
    assert period_start("daily", thursday) == datetime(2026, 12, 3, tzinfo=UTC)
    assert period_start("weekly", thursday) == datetime(2026, 11, 30, tzinfo=UTC)  # Monday
    assert period_start("monthly", thursday) == datetime(2026, 12, 1, tzinfo=UTC)
    assert period_start("none", thursday) is None
