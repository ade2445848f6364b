"""The usage ledger: one row per chat completion however it ends (answered, streamed, cut by the
client or the upstream, failed), with its tokens and cost; and the usage API's figures, which
are the ledger's. A real uvicorn on loopback (client disconnects need a real socket), its own
PostgreSQL database, the stub upstream and the official openai SDK."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from chatservice.config import ModelRoute
from chatservice.main import create_app
from tests.service.accounting_db import new_key, wait_for_rows
from tests.service.harness import AUTH, make_settings, serve_on_loopback
from tests.service.stub_upstream import StubUpstream

# USD per million tokens.
INPUT_PRICE, OUTPUT_PRICE = 3.0, 15.0


def _routes(upstream: StubUpstream) -> list[ModelRoute]:
    return [
        ModelRoute(name="echo", backend="echo"),
        ModelRoute(
            name="upstream",
            backend="openai",
            base_url=upstream.base_url,
            upstream_model="stub-model-v1",
            api_key="sk-upstream-secret",
            input_price_per_million_tokens=INPUT_PRICE,
            output_price_per_million_tokens=OUTPUT_PRICE,
        ),
    ]


@pytest.fixture
async def service(database: str, upstream: StubUpstream) -> AsyncIterator[str]:
    settings = make_settings(database, upstream, models=_routes(upstream), upstream_max_retries=0)
    async with serve_on_loopback(create_app(settings)) as url:
        yield url


def _sdk(url: str, key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=url + "/api/v1", api_key=key, max_retries=0)


MESSAGES: Any = [{"role": "user", "content": "hi"}]


async def _read_then_hang_up(url: str, key: str, events: int) -> int:
    """Start a long stream, read `events` events, close the connection; the events read."""
    read = 0
    async with httpx.AsyncClient(timeout=10) as http:
        async with http.stream(
            "POST",
            url + "/api/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "upstream", "stream": True, "messages": MESSAGES},
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    read += 1
                    if read == events:
                        break
    return read


async def test_every_completion_leaves_one_row_with_its_tokens_and_cost(
    service: str, database: str, upstream: StubUpstream
) -> None:
    key, key_id = await new_key(database)
    sdk = _sdk(service, key)

    answer = await sdk.chat.completions.create(model="upstream", messages=MESSAGES)
    assert answer.usage is not None
    assert answer.usage.total_tokens == 10

    stream = await sdk.chat.completions.create(
        model="upstream", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    assert [chunk async for chunk in stream][-1].usage is not None

    upstream.plan.append("no_usage")  # as llama.cpp: the tokens are counted from the chunks
    stream = await sdk.chat.completions.create(model="upstream", messages=MESSAGES, stream=True)
    assert len([chunk async for chunk in stream]) > 5

    upstream.plan.append("status:500")
    with pytest.raises(openai.InternalServerError):
        await sdk.chat.completions.create(model="upstream", messages=MESSAGES)

    upstream.plan.append("drop_stream")  # the upstream cuts the stream after its first word
    stream = await sdk.chat.completions.create(model="upstream", messages=MESSAGES, stream=True)
    with pytest.raises(openai.APIError):
        _ = [chunk async for chunk in stream]

    upstream.plan.append("slow_stream")  # 200 words, one per 50 ms; the client leaves early
    assert await _read_then_hang_up(service, key, events=6) == 6

    await sdk.chat.completions.create(model="echo", messages=MESSAGES)

    rows = await wait_for_rows(database, 7, key_id=key_id)
    assert len(rows) == 7
    json_ok, stream_ok, counted, failed, cut_upstream, cut_client, echo = rows
    assert (json_ok.prompt_tokens, json_ok.completion_tokens, json_ok.total_tokens) == (5, 5, 10)
    assert (json_ok.status, json_ok.outcome, json_ok.stream) == (200, "success", False)
    assert json_ok.cost_usd == pytest.approx((5 * INPUT_PRICE + 5 * OUTPUT_PRICE) / 1e6)
    assert json_ok.upstream == "stub-model-v1"
    assert json_ok.time_to_first_token_ms is None
    assert json_ok.latency_ms > 0
    assert (stream_ok.completion_tokens, stream_ok.outcome) == (5, "success")
    assert stream_ok.stream
    assert stream_ok.time_to_first_token_ms is not None
    assert not stream_ok.tokens_estimated
    assert (counted.completion_tokens, counted.tokens_estimated) == (5, True)
    assert (failed.status, failed.outcome, failed.total_tokens) == (502, "upstream_error", 0)
    assert cut_upstream.status == 200
    assert cut_upstream.outcome != "success"
    assert cut_upstream.completion_tokens == 1  # the one word that reached the client
    assert cut_client.outcome == "cancelled"
    assert 5 <= cut_client.completion_tokens < 200  # what was relayed before the hang-up
    assert cut_client.cost_usd > 0
    assert (echo.model, echo.cost_usd, echo.outcome) == ("echo", 0.0, "success")
    assert all(row.user_id is not None for row in rows)
    assert len({row.request_id for row in rows}) == 7
    assert {row.api for row in rows} == {"chat/completions"}


async def test_the_usage_api_totals_are_the_ledgers_and_members_see_their_own(
    service: str, database: str
) -> None:
    member, member_id = await new_key(database)
    other, other_id = await new_key(database)
    for key, count in ((member, 3), (other, 2)):
        sdk = _sdk(service, key)
        for _ in range(count):
            await sdk.chat.completions.create(model="upstream", messages=MESSAGES)
    await sdk.chat.completions.create(model="echo", messages=MESSAGES)
    rows = await wait_for_rows(database, 6)
    assert len(rows) == 6

    async with httpx.AsyncClient(base_url=service + "/api/v1", timeout=10) as http:
        everyone = (await http.get("/usage", params={"group_by": "key"}, headers=AUTH)).json()
        by_key = {group["group"]: group for group in everyone["data"]}
        assert by_key[str(member_id)]["requests"] == 3
        assert by_key[str(other_id)]["requests"] == 3
        totals = everyone["totals"]
        assert totals["requests"] == 6
        assert totals["total_tokens"] == sum(row.total_tokens for row in rows)
        assert totals["cost_usd"] == pytest.approx(sum(row.cost_usd for row in rows))

        by_model = (await http.get("/usage", params={"group_by": "model"}, headers=AUTH)).json()
        assert {g["group"]: g["requests"] for g in by_model["data"]} == {"echo": 1, "upstream": 5}
        assert by_model["totals"] == {**totals, "cost_usd": pytest.approx(totals["cost_usd"])}

        mine = await http.get(
            "/usage", params={"group_by": "day"}, headers={"Authorization": f"Bearer {member}"}
        )
        assert mine.status_code == 200
        assert mine.json()["totals"]["requests"] == 3
        assert len(mine.json()["data"]) == 1  # one day, today

        exported = await http.get(
            "/usage", params={"group_by": "key", "format": "csv"}, headers=AUTH
        )
        assert exported.headers["content-type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(exported.text)))
        assert sum(int(line["requests"]) for line in table) == 6
        assert sum(float(line["cost_usd"]) for line in table) == pytest.approx(totals["cost_usd"])

        refused = await http.get(
            "/limits/key/" + str(other_id), headers={"Authorization": f"Bearer {member}"}
        )
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "permission_denied"
