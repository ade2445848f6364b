"""Every metric the chart's dashboards query is one the service or the operator exports, and
every family they export is on a dashboard: the names come from real scrapes of a gunicorn
service that served each kind of request and of the operator process, not from a list kept by
hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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
# Exported families no panel shows, each with the reason (none today).
NOT_ON_A_DASHBOARD: dict[str, str] = {}


def exported(exposition: str) -> set[str]:
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def families_off_the_dashboard(exposition: str, dashboard: dict[str, Any]) -> set[str]:
    """This project's families (`chatservice_*`) none of whose samples a panel queries."""
    queried = set().union(*(metric_names(expr) for expr in queries(dashboard)))
    return {
        family.name
        for family in text_string_to_metric_families(exposition)
        # `*_created`: prometheus_client's creation time of each series, no family of ours.
        if family.name.startswith("chatservice_")
        and not family.name.endswith("_created")
        and not {sample.name for sample in family.samples} & queried
    } - set(NOT_ON_A_DASHBOARD)


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
    exposition = httpx.get(server.url + "/metrics", timeout=5).text
    names = exported(exposition) | PROMETHEUS_SERIES
    dashboard = shipped()["chatservice-gateway"]
    for expr in queries(dashboard):
        assert metric_names(expr) <= names, f"{expr} names a metric the service does not export"
    assert families_off_the_dashboard(exposition, dashboard) == set()


async def test_operator_dashboard_names_only_metrics_the_operator_exports(tmp_path: Path) -> None:
    port = free_port()
    async with emulated_cluster(tmp_path) as (_, kubeconfig):
        async with operator_process(kubeconfig, port):
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    exposition = await response.text()
    names = exported(exposition) | PROMETHEUS_SERIES
    dashboard = shipped()["chatservice-operator"]
    for expr in queries(dashboard):
        assert metric_names(expr) <= names, f"{expr} names a metric the operator does not export"
    assert families_off_the_dashboard(exposition, dashboard) == set()
