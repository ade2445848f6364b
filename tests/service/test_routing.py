"""Routes of several endpoints and fallback models, against real stub upstreams on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from chatservice.config import ModelRoute, UpstreamEndpoint
from chatservice.main import create_app
from tests.ports import free_port
from tests.service.harness import (
    ADMIN_KEY,
    AUTH,
    CHAT,
    make_settings,
    serve,
    serve_on_loopback,
    sse_events,
)
from tests.service.stub_upstream import REPLY, StubUpstream

pytestmark = pytest.mark.timeout(120)


def ask(model: str = "pool", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.fixture(scope="module")
def servers() -> Iterator[list[StubUpstream]]:
    started = [StubUpstream() for _ in range(3)]
    for server in started:
        server.start()
    try:
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def stubs(servers: list[StubUpstream]) -> list[StubUpstream]:
    for server in servers:
        server.reset()
    return servers


def endpoint(stub: StubUpstream, **extra: Any) -> UpstreamEndpoint:
    return UpstreamEndpoint(base_url=stub.base_url, **extra)


def pool_route(*endpoints: UpstreamEndpoint, **extra: Any) -> ModelRoute:
    return ModelRoute(name="pool", backend="openai", endpoints=endpoints, **extra)


@pytest.fixture
def open_service(pg_url: str) -> Any:
    def open_(*routes: ModelRoute, **overrides: object) -> Any:
        settings = make_settings(pg_url, None, models=list(routes), **overrides)
        return serve(create_app(settings))

    return open_


async def post_many(http: httpx.AsyncClient, count: int, concurrency: int) -> list[httpx.Response]:
    """`count` chat requests, `concurrency` of them in flight at any time."""
    results: list[httpx.Response] = []

    async def worker(share: int) -> None:
        for _ in range(share):
            results.append(await http.post(CHAT, headers=AUTH, json=ask()))

    shares = [count // concurrency + (i < count % concurrency) for i in range(concurrency)]
    await asyncio.gather(*(worker(share) for share in shares))
    return results


async def test_weights_set_the_shares_over_1000_requests(
    stubs: list[StubUpstream], open_service: Any
) -> None:
    light, heavy, _ = stubs
    route = pool_route(endpoint(light, weight=1), endpoint(heavy, weight=3))
    async with open_service(route) as http:
        responses = await post_many(http, 1000, 1)
    assert all(r.status_code == 200 for r in responses)
    assert len(light.requests) + len(heavy.requests) == 1000
    assert 0.70 <= len(heavy.requests) / 1000 <= 0.80


async def test_least_outstanding_sends_most_requests_to_the_faster_endpoint(
    stubs: list[StubUpstream], open_service: Any
) -> None:
    slow, fast, _ = stubs
    slow.default = "delay:0.2"
    async with open_service(pool_route(endpoint(slow), endpoint(fast))) as http:
        responses = await post_many(http, 200, 8)
    assert all(r.status_code == 200 for r in responses)
    # Equal weights, but the slow one keeps requests in flight longer and so loses the draws.
    assert len(fast.requests) > 3 * len(slow.requests)


async def test_a_failing_endpoint_is_ejected_then_trusted_again_after_its_cooldown(
    stubs: list[StubUpstream], open_service: Any
) -> None:
    failing, healthy, _ = stubs
    failing.default = "status:503"
    # A cooldown long enough that the 60 requests below end inside it on a loaded CI machine.
    settings = {"endpoint_failures_to_eject": 2, "endpoint_cooldown": 4.0}
    async with open_service(pool_route(endpoint(failing), endpoint(healthy)), **settings) as http:
        responses = await post_many(http, 40, 4)
        assert [r.status_code for r in responses] == [200] * 40  # retried on the other one
        assert len(failing.requests) <= 2 + 4  # until ejected (and those already in flight)
        before = len(failing.requests)
        await post_many(http, 20, 2)
        assert len(failing.requests) == before  # ejected: never chosen in the cooldown

        health = (await http.get("/api/v1/models/pool", headers=AUTH)).json()
        assert health["endpoints"] == {"total": 2, "healthy": 1}

        failing.default = "ok"
        await asyncio.sleep(5.0)  # the cooldown (4 s, jitter ±20 %) has passed
        await post_many(http, 40, 1)
        assert len(failing.requests) > before + 5  # a trial succeeded: traffic again
        health = (await http.get("/api/v1/models/pool", headers=AUTH)).json()
        assert health["endpoints"] == {"total": 2, "healthy": 2}


async def pool_endpoint_metrics(http: httpx.AsyncClient) -> dict[str, float]:
    """The `pool` model's endpoint gauges and ejection counter, by sample name."""
    names = {
        "chatservice_route_endpoints",
        "chatservice_route_ejected_endpoints",
        "chatservice_endpoint_ejections_total",
    }
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families((await http.get("/metrics")).text)
        for sample in family.samples
        if sample.name in names and sample.labels == {"model": "pool"}
    }


async def test_the_endpoint_metrics_follow_an_ejection_and_the_trust_after_it(
    stubs: list[StubUpstream], open_service: Any
) -> None:
    failing, healthy, _ = stubs
    failing.default = "status:503"
    settings = {"endpoint_failures_to_eject": 1, "endpoint_cooldown": 1.0}
    async with open_service(pool_route(endpoint(failing), endpoint(healthy)), **settings) as http:
        before = await pool_endpoint_metrics(http)
        assert before["chatservice_route_endpoints"] == 2
        assert before["chatservice_route_ejected_endpoints"] == 0
        await post_many(http, 10, 1)
        ejected = await pool_endpoint_metrics(http)
        assert ejected["chatservice_route_ejected_endpoints"] == 1
        ejections = "chatservice_endpoint_ejections_total"
        assert ejected[ejections] > before[ejections]

        failing.default = "ok"
        # Past the cooldown (1 s, doubled if a slow machine made a trial fail) a trial succeeds.
        deadline = time.monotonic() + 15
        while (await pool_endpoint_metrics(http))["chatservice_route_ejected_endpoints"]:
            assert time.monotonic() < deadline, "the endpoint was never trusted again"
            await post_many(http, 5, 1)
            await asyncio.sleep(0.2)
        trusted = await pool_endpoint_metrics(http)
    assert trusted["chatservice_route_endpoints"] == 2
    assert trusted["chatservice_route_ejected_endpoints"] == 0


async def test_a_killed_endpoint_fails_no_request_not_yet_sent_and_returns_after_cooldown(
    stubs: list[StubUpstream], open_service: Any
) -> None:
    doomed, *others = stubs
    route = pool_route(*(endpoint(s) for s in stubs))
    settings = {"endpoint_failures_to_eject": 1, "endpoint_cooldown": 0.5}
    async with open_service(route, **settings) as http:
        load = asyncio.create_task(post_many(http, 600, 6))
        await asyncio.sleep(0.3)
        doomed.stop()
        in_flight_at_kill = 6
        responses = await load
        failed = [r for r in responses if r.status_code != 200]
        assert len(failed) <= in_flight_at_kill
        assert all(len(s.requests) > 50 for s in others)

        before = len(doomed.requests)
        doomed.start()  # back on its port
        await asyncio.sleep(1.0)
        responses = await post_many(http, 60, 3)
    assert all(r.status_code == 200 for r in responses)
    assert len(doomed.requests) > before + 5


async def test_a_429_with_retry_after_rests_that_endpoint_only(
    stubs: list[StubUpstream], open_service: Any
) -> None:
    limited, other, _ = stubs
    limited.default = "status:429:30"
    async with open_service(pool_route(endpoint(limited), endpoint(other))) as http:
        responses = await post_many(http, 30, 1)
    assert all(r.status_code == 200 for r in responses)
    assert len(limited.requests) == 1  # then 30 s of rest
    assert len(other.requests) == 30


async def test_fallbacks_are_tried_in_order_and_the_answer_says_who_answered(
    stubs: list[StubUpstream], open_service: Any
) -> None:
    unavailable, limited, ok = stubs
    unavailable.default = "status:503"
    limited.default = "status:429"
    closed = f"http://127.0.0.1:{free_port()}/v1"
    routes = (
        ModelRoute(
            name="big",
            backend="openai",
            base_url=unavailable.base_url,
            fallbacks=("unreachable", "limited", "small"),
        ),
        ModelRoute(name="unreachable", backend="openai", base_url=closed),
        ModelRoute(name="limited", backend="openai", base_url=limited.base_url),
        ModelRoute(name="small", backend="openai", base_url=ok.base_url),
    )
    async with open_service(*routes) as http:
        response = await http.post(CHAT, headers=AUTH, json=ask("big"))
        streamed = await http.post(CHAT, headers=AUTH, json=ask("big", stream=True))
    assert response.status_code == 200
    assert response.json()["model"] == "small"
    assert response.headers["x-chatservice-upstream"] == "small/0"
    assert streamed.headers["x-chatservice-upstream"] == "small/0"
    assert {c["model"] for c in sse_events(streamed.text)[:-1]} == {"small"}
    # Three tries on the model's own endpoint, which is then ejected (its route has somewhere
    # else to go): the second request goes straight to the fallbacks.
    assert len(unavailable.requests) == 3
    # A route with one endpoint and no fallbacks of its own is never ejected.
    assert len(limited.requests) == 2 * 3
    assert len(ok.requests) == 2


async def test_the_fallback_chain_keeps_one_deadline(
    stubs: list[StubUpstream], open_service: Any
) -> None:
    unavailable, slow, _ = stubs
    unavailable.default = "status:503"
    slow.default = "delay:5"
    routes = (
        ModelRoute(
            name="big", backend="openai", base_url=unavailable.base_url, fallbacks=("slow",)
        ),
        ModelRoute(name="slow", backend="openai", base_url=slow.base_url),
    )
    async with open_service(
        *routes, upstream_total_timeout=1.0, upstream_first_byte_timeout=5.0
    ) as http:
        started = time.monotonic()
        response = await http.post(CHAT, headers=AUTH, json=ask("big"))
        elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert elapsed < 1.5
    assert len(slow.requests) == 1


async def test_a_stream_is_never_retried_after_its_first_byte(
    stubs: list[StubUpstream], open_service: Any
) -> None:
    breaking, spare, _ = stubs
    breaking.default = "drop_stream"
    routes = (
        ModelRoute(name="big", backend="openai", base_url=breaking.base_url, fallbacks=("spare",)),
        ModelRoute(name="spare", backend="openai", base_url=spare.base_url),
    )
    async with open_service(*routes) as http:
        response = await http.post(CHAT, headers=AUTH, json=ask("big", stream=True))
    events = sse_events(response.text)
    assert events[0]["model"] == "big"
    assert events[-1]["error"]["code"] == "upstream_stream_broken"
    assert len(breaking.requests) == 1
    assert spare.requests == []


async def test_at_the_concurrency_cap_requests_queue_then_get_429(
    stubs: list[StubUpstream], open_service: Any
) -> None:
    busy, _, _ = stubs
    busy.default = "delay:1"
    route = pool_route(endpoint(busy, max_concurrency=1))
    settings = {"route_queue_size": 1, "route_queue_timeout": 0.3}
    async with open_service(route, **settings) as http:
        first = asyncio.create_task(http.post(CHAT, headers=AUTH, json=ask()))
        await asyncio.sleep(0.1)
        queued = asyncio.create_task(http.post(CHAT, headers=AUTH, json=ask()))
        await asyncio.sleep(0.1)
        refused = await http.post(CHAT, headers=AUTH, json=ask())  # the queue is full
        timed_out = await queued
        served = await first
        metrics = (await http.get("/metrics")).text
    assert served.status_code == 200
    for response in (refused, timed_out):
        assert response.status_code == 429
        assert response.json()["error"]["code"] == "model_overloaded"
        assert response.json()["error"]["type"] == "rate_limit_error"
        assert int(response.headers["Retry-After"]) >= 1
    assert len(busy.requests) == 1
    assert 'chatservice_route_queue_wait_seconds_count{model="pool"}' in metrics


async def test_a_queued_request_is_served_when_an_endpoint_frees(
    stubs: list[StubUpstream], open_service: Any
) -> None:
    busy, _, _ = stubs
    busy.default = "delay:0.2"
    route = pool_route(endpoint(busy, max_concurrency=1))
    async with open_service(route, route_queue_timeout=5.0) as http:
        responses = await asyncio.gather(
            *(http.post(CHAT, headers=AUTH, json=ask()) for _ in range(4))
        )
    assert [r.status_code for r in responses] == [200] * 4


async def test_health_shows_each_endpoint(stubs: list[StubUpstream], open_service: Any) -> None:
    failing, healthy, _ = stubs
    failing.default = "status:500"
    settings = {"endpoint_failures_to_eject": 1}
    async with open_service(pool_route(endpoint(failing), endpoint(healthy)), **settings) as http:
        await post_many(http, 10, 1)
        body = (await http.get("/api/v1/health/", headers=AUTH)).json()
    text = str(body)
    assert "ejected" in text
    assert failing.base_url not in text  # addresses are not for the public


@pytest.fixture
async def sdk_service(pg_url: str, stubs: list[StubUpstream]) -> AsyncIterator[str]:
    """The service on a real loopback socket, with `pool` over two stubs; yields its URL."""
    route = pool_route(endpoint(stubs[0]), endpoint(stubs[1]), upstream_model="stub-model-v1")
    app = create_app(make_settings(pg_url, None, models=[ModelRoute(name="echo"), route]))
    async with serve_on_loopback(app) as url:
        yield url


@pytest.mark.parametrize("base_path", ["/api/v1", "/v1"])
async def test_embeddings_and_legacy_completions_through_the_official_sdk(
    sdk_service: str, stubs: list[StubUpstream], base_path: str
) -> None:
    sdk = openai.AsyncOpenAI(base_url=sdk_service + base_path, api_key=ADMIN_KEY, max_retries=0)
    async with sdk:
        embeddings = await sdk.embeddings.create(model="pool", input=["a", "bcd"])
        completion = await sdk.completions.create(model="pool", prompt="Say", max_tokens=5)
        stream = await sdk.completions.create(model="pool", prompt="Say", stream=True)
        streamed = [chunk async for chunk in stream]
        models = await sdk.models.list()
        chat = await sdk.chat.completions.create(
            model="pool", messages=[{"role": "user", "content": "hi"}]
        )
        with pytest.raises(openai.BadRequestError) as refused:
            await sdk.embeddings.create(model="echo", input="a")
    assert embeddings.model == "pool"
    assert [len(e.embedding) for e in embeddings.data] == [3, 3]
    assert completion.model == "pool"
    assert completion.choices[0].text == REPLY
    assert "".join(c.choices[0].text for c in streamed) == REPLY
    assert {c.model for c in streamed} == {"pool"}
    assert chat.model == "pool"
    pool = next(m for m in models.data if m.id == "pool")
    assert pool.model_extra == {"endpoints": {"total": 2, "healthy": 2}}
    assert refused.value.code == "model_not_supported"
    sent = [r for s in stubs[:2] for r in s.requests]
    assert len(sent) == 4
    assert {r["model"] for r in sent} == {"stub-model-v1"}
    # The token limit goes upstream under the route's name for it, as for chat.
    assert any(r.get("max_tokens") == 5 for r in sent)


async def test_relayed_endpoints_need_a_key(sdk_service: str) -> None:
    async with httpx.AsyncClient(base_url=sdk_service) as http:
        for path in ("/v1/embeddings", "/api/v1/completions"):
            response = await http.post(path, json={"model": "pool", "input": "a", "prompt": "a"})
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "invalid_request_error"
