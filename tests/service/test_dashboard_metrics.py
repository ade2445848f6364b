"""Every metric the chart's dashboards query is one the service or the operator exports: the
names come from real scrapes of a gunicorn service that served each kind of request and of the
operator process, not from a list kept by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import httpx
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from tests.chart.dashboards import metric_names, queries, shipped
from tests.ports import free_port
from tests.service.gunicorn_server import Gunicorn, gunicorn_starter
from tests.service.operator_process import emulated_cluster, operator_process
from tests.service.stub_upstream import StubUpstream, echo_and_stub_routes

# Series Prometheus adds to every scrape target itself.
PROMETHEUS_SERIES = {"up"}


def exported(exposition: str) -> set[str]:
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


@pytest.fixture
def start_gunicorn(pg_url: str, tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    with gunicorn_starter(pg_url, tmp_path) as start:
        yield start


def serve_each_kind_of_request(server: Gunicorn, upstream: StubUpstream) -> None:
    sdk = server.sdk()
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
    sdk.chat.completions.create(model="echo", messages=messages)
    for _ in sdk.chat.completions.create(model="echo", messages=messages, stream=True):
        pass
    upstream.plan[:] = ["no_usage", "status:500"]
    sdk.chat.completions.create(model="upstream", messages=messages)
    headers = {"Authorization": f"Bearer {server.key}"}
    for model in ("upstream", "no-such-model"):
        body = {"model": model, "messages": messages}
        response = httpx.post(server.api + "/chat/completions", json=body, headers=headers)
        assert response.status_code in (404, 502), response.text


def test_gateway_dashboard_names_only_metrics_the_service_exports(
    start_gunicorn: Callable[..., Gunicorn], upstream: StubUpstream
) -> None:
    server = start_gunicorn(CHATSERVICE_MODELS=echo_and_stub_routes(upstream))
    serve_each_kind_of_request(server, upstream)
    names = exported(httpx.get(server.url + "/metrics", timeout=5).text) | PROMETHEUS_SERIES
    dashboard = shipped()["chatservice-gateway"]
    for expr in queries(dashboard):
        assert metric_names(expr) <= names, f"{expr} names a metric the service does not export"


async def test_operator_dashboard_names_only_metrics_the_operator_exports(tmp_path: Path) -> None:
    port = free_port()
    async with emulated_cluster(tmp_path) as (_, kubeconfig):
        async with operator_process(kubeconfig, port):
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    exposition = await response.text()
    names = exported(exposition) | PROMETHEUS_SERIES
    for expr in queries(shipped()["chatservice-operator"]):
        assert metric_names(expr) <= names, f"{expr} names a metric the operator does not export"
