"""A route's endpoints discovered from a DNS name, against a loopback DNS server whose records
change while traffic flows, and stub upstreams on 127.0.0.2-4 sharing one port (the pods of a
headless Service)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from chatservice.config import ModelRoute, Settings
from chatservice.inference.dns_discovery import build_resolver, discovered_entries
from chatservice.inference.endpoint_pool import EndpointPool
from chatservice.main import create_app
from tests.ports import free_port
from tests.service.dns_server import LoopbackDns
from tests.service.gunicorn_server import Gunicorn
from tests.service.harness import AUTH, CHAT, make_settings, serve
from tests.service.stub_upstream import StubUpstream

pytestmark = pytest.mark.timeout(120)

NAME = "pods.models.test"
REFRESH = 0.5
# A change is seen within one refresh plus one resolution; this leaves room on a busy machine.
SETTLE = 4 * REFRESH
ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
ASK = {"model": "pods", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def pods() -> Iterator[list[StubUpstream]]:
    port = free_port()
    started = [StubUpstream(port, host=address) for address in ADDRESSES]
    for pod in started:
        pod.start()
    try:
        yield started
    finally:
        for pod in started:
            pod.stop()


@pytest.fixture
def stubs(pods: list[StubUpstream]) -> list[StubUpstream]:
    for pod in pods:
        pod.reset()
    return pods


@pytest.fixture
def dns() -> Iterator[LoopbackDns]:
    server = LoopbackDns()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def discovered_route(port: int) -> ModelRoute:
    return ModelRoute(
        name="pods",
        backend="openai",
        base_url=f"http://{NAME}:{port}/v1",
        discovery="dns",
        upstream_model="stub-model-v1",
    )


def dns_settings(pg_url: str, dns: LoopbackDns, port: int) -> Settings:
    return make_settings(
        pg_url,
        None,
        models=[discovered_route(port)],
        dns_nameserver=dns.nameserver,
        dns_refresh_interval=REFRESH,
        dns_timeout=0.3,
    )


class Traffic:
    """Chat requests, `concurrency` in flight, until stopped; every answer's status kept."""

    def __init__(self, http: httpx.AsyncClient, concurrency: int = 4) -> None:
        self._http = http
        self._concurrency = concurrency
        self._running = True
        self.statuses: list[int] = []

    async def _client(self) -> None:
        while self._running:
            response = await self._http.post(CHAT, headers=AUTH, json=ASK)
            self.statuses.append(response.status_code)
            await asyncio.sleep(0.005)

    @asynccontextmanager
    async def flowing(self) -> AsyncIterator[Traffic]:
        clients = [asyncio.create_task(self._client()) for _ in range(self._concurrency)]
        try:
            yield self
        finally:
            self._running = False
            await asyncio.wait_for(asyncio.gather(*clients), timeout=10)


async def until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


async def requests_during(stubs: list[StubUpstream], seconds: float) -> list[int]:
    before = [len(s.requests) for s in stubs]
    await asyncio.sleep(seconds)
    return [len(s.requests) - b for s, b in zip(stubs, before, strict=True)]


def resolutions(metrics_text: str, outcome: str) -> float:
    pattern = rf'chatservice_dns_resolutions_total{{model="pods",outcome="{outcome}"}} (\S+)'
    found = re.search(pattern, metrics_text)
    return float(found.group(1)) if found else 0.0


async def test_endpoints_follow_the_records_while_traffic_flows(
    stubs: list[StubUpstream], dns: LoopbackDns, pg_url: str
) -> None:
    first, second, third = stubs
    dns.set(NAME, first.host, second.host)
    async with serve(create_app(dns_settings(pg_url, dns, first.port))) as http:
        # Resolved before serving: the first requests already go to both.
        async with Traffic(http).flowing() as traffic:
            await until(lambda: bool(first.requests and second.requests), 5, "both pods used")
            assert third.requests == []
            # The upstream sees the name it was configured with, not the address.
            assert first.headers[-1]["Host"] == f"{NAME}:{first.port}"

            dns.set(NAME, *ADDRESSES)
            await until(lambda: bool(third.requests), SETTLE, "the added pod gets traffic")

            dns.set(NAME, second.host, third.host)
            await asyncio.sleep(SETTLE)
            during = await requests_during(stubs, 1.0)
            assert during[0] == 0, during
            assert min(during[1:]) > 0, during

            health = (await http.get("/api/v1/health/")).json()
            endpoints = health["backends"]["pods"]["endpoints"]
            assert [e["state"] for e in endpoints] == ["healthy", "healthy"]
            model = (await http.get("/api/v1/models/pods", headers=AUTH)).json()
            assert model["endpoints"] == {"total": 2, "healthy": 2}
            exposed = (await http.get("/metrics")).text
            assert 'chatservice_route_endpoints{model="pods"} 2.0' in exposed

            # The DNS server goes away: the last known pods keep serving.
            dns.stop()
            await asyncio.sleep(SETTLE)
            during = await requests_during(stubs, 1.0)
            assert during[0] == 0, during
            assert min(during[1:]) > 0, during
            failed = resolutions((await http.get("/metrics")).text, "failed")
            assert failed >= 1

            # Back, with the first pod again: it gets traffic again.
            dns.set(NAME, *ADDRESSES)
            dns.start()
            count = len(first.requests)
            await until(lambda: len(first.requests) > count, SETTLE, "the pod is back")
    assert traffic.statuses, "no traffic flowed"
    assert set(traffic.statuses) == {200}, "a client saw a failure"


async def test_a_name_without_addresses_keeps_the_route_unavailable_until_it_has_some(
    stubs: list[StubUpstream], dns: LoopbackDns, pg_url: str
) -> None:
    first = stubs[0]
    dns.set(NAME)  # the Service exists, no pod is ready
    async with serve(create_app(dns_settings(pg_url, dns, first.port))) as http:
        refused = await http.post(CHAT, headers=AUTH, json=ASK)
        assert refused.status_code == 502
        assert refused.json()["error"]["code"] == "no_available_endpoint"
        health = (await http.get("/api/v1/health/")).json()
        assert health["backends"]["pods"]["status"] == "unavailable"

        dns.set(NAME, first.host)
        deadline = time.monotonic() + SETTLE
        while (await http.get("/api/v1/models/pods", headers=AUTH)).json()["endpoints"] != {
            "total": 1,
            "healthy": 1,
        }:
            assert time.monotonic() < deadline, "the pod was not discovered in time"
            await asyncio.sleep(0.05)
        answered = await http.post(CHAT, headers=AUTH, json=ASK)
        assert answered.status_code == 200
        assert answered.headers["x-chatservice-upstream"] == "pods/0.1"


def test_two_gunicorn_workers_each_follow_the_records(
    start_gunicorn: Callable[..., Gunicorn], stubs: list[StubUpstream], dns: LoopbackDns
) -> None:
    first, second, _ = stubs
    dns.set(NAME, first.host, second.host)
    models = [discovered_route(first.port).model_dump(mode="json", exclude_defaults=True)]
    server = start_gunicorn(
        CHATSERVICE_MODELS=json.dumps(models),
        CHATSERVICE_DNS_NAMESERVER=dns.nameserver,
        CHATSERVICE_DNS_REFRESH_INTERVAL=str(REFRESH),
        CHATSERVICE_DNS_TIMEOUT="0.3",
    )
    sdk = openai.OpenAI(base_url=server.url + "/v1", api_key=server.key, max_retries=0)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
    for _ in range(40):
        assert sdk.chat.completions.create(model="pods", messages=messages).model == "pods"
    assert first.requests
    assert second.requests

    dns.set(NAME, second.host)
    time.sleep(SETTLE)  # every worker refreshes on its own
    before = len(first.requests)
    for _ in range(40):
        sdk.chat.completions.create(model="pods", messages=messages)
    assert len(first.requests) == before


def test_addresses_become_urls_and_the_nameserver_setting_parses() -> None:
    route = ModelRoute(
        name="pods", backend="openai", base_url="https://vllm.models.svc:8443/v1", discovery="dns"
    )
    (entry,) = discovered_entries([EndpointPool(route, Settings())])
    assert entry.name == "vllm.models.svc"
    assert entry.host_header == "vllm.models.svc:8443"
    assert entry.address_url("10.0.0.7") == "https://10.0.0.7:8443/v1"
    assert entry.address_url("fd00::7") == "https://[fd00::7]:8443/v1"

    resolver = build_resolver(Settings(dns_nameserver="[::1]:5353"))
    assert (resolver.nameservers, resolver.port) == (["::1"], 5353)
    resolver = build_resolver(Settings(dns_nameserver="10.96.0.10"))
    assert (resolver.nameservers, resolver.port) == (["10.96.0.10"], 53)


def test_a_refresh_keeps_the_endpoints_that_stay_and_lets_removed_ones_finish() -> None:
    route = ModelRoute(
        name="pods", backend="openai", base_url="http://vllm.models.svc:8000/v1", discovery="dns"
    )
    pool = EndpointPool(route, Settings(endpoint_failures_to_eject=1))
    assert pool.endpoints == []

    def discover(*urls: str) -> tuple[int, int]:
        return pool.replace_discovered(0, urls, "vllm.models.svc:8000", "vllm.models.svc")

    assert discover("http://10.0.0.1:8000/v1", "http://10.0.0.2:8000/v1") == (2, 0)
    first, second = pool.endpoints
    in_flight = pool.pick({second})
    assert in_flight is first
    pool.failed(second, "503")
    assert second.state(time.monotonic()) == "ejected"

    assert discover("http://10.0.0.2:8000/v1") == (0, 1)
    assert pool.endpoints == [second]
    assert second.last_error == "503"  # the same endpoint, not a new one
    # Now the only one: like a single base_url, it is not kept out for the rest of a cooldown.
    assert second.state(time.monotonic()) == "healthy"
    pool.release(first)  # the request sent before the refresh ends as usual
    assert first.outstanding == 0
    assert pool.pick(set()) is second
    assert [r.endpoint for r in pool.report()] == ["pods/0.2"]
