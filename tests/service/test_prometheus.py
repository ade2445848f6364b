"""A real Prometheus scrapes a real gunicorn service (two workers, recycled after a few requests)
and the real operator process; PromQL over its data gives the numbers the requests made."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.operator.operator_harness import CHATSERVICES, JOBS, eventually
from tests.operator.operator_specs import OLD, body, job_for
from tests.ports import free_port
from tests.service.gunicorn_server import Gunicorn, gunicorn_starter
from tests.service.operator_process import emulated_cluster, operator_process
from tests.service.prometheus import Prometheus, prometheus_server, require

CHAT = 'route="/api/v1/chat/completions"'
# Two words at 0.15 s each: a success takes about 0.3 s, in the (0.25, 0.5] latency bucket,
# while refused requests answer in milliseconds.
WORD_DELAY = "0.15"
SUCCESSES, NOT_FOUND, UNAUTHENTICATED = 28, 7, 5


def chat(server: Gunicorn, model: str = "echo", key: str | None = None) -> int:
    # A new connection per request, so both workers serve them. A connection accepted just as
    # its worker recycled itself can be reset before the app saw it (gunicorn issue #2567):
    # that request never happened, so it is sent again.
    for _ in range(3):
        try:
            response = httpx.post(
                server.api + "/chat/completions",
                headers={"Authorization": f"Bearer {key or server.key}", "Connection": "close"},
                json={"model": model, "messages": [{"role": "user", "content": "count me"}]},
                timeout=10,
            )
            return response.status_code
        except (httpx.ReadError, httpx.RemoteProtocolError):
            time.sleep(0.1)
    raise AssertionError("the request was reset three times")


def send_each_kind(server: Gunicorn, successes: int, not_found: int, unauthenticated: int) -> None:
    calls = (
        [lambda: chat(server)] * successes
        + [lambda: chat(server, model="no-such-model")] * not_found
        + [lambda: chat(server, key="sk-wrong")] * unauthenticated
    )
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda call: call(), calls))
    assert sorted(statuses) == sorted(
        [200] * successes + [404] * not_found + [401] * unauthenticated
    )


def last_scrape_at(prometheus: Prometheus, total: float) -> float:
    """The timestamp of the latest scrape, once the chat completions scraped sum to `total`."""

    def scraped() -> bool:
        return prometheus.value("sum(chatservice_chat_completions_total)") == total

    prometheus.wait_for(f"{total:g} chat completions", scraped)
    # Every series of one target is scraped at the same instant: one series' timestamps do.
    return prometheus.samples(
        'chatservice_chat_completions_total{outcome="success", stream="false"}'
    )[-1][0]


async def test_promql_adds_up_workers_restarts_and_the_operator(
    pg_url: str, tmp_path: Path
) -> None:
    require("prometheus")
    operator_metrics = free_port()
    async with emulated_cluster(tmp_path) as (cluster, kubeconfig):
        async with operator_process(kubeconfig, operator_metrics):
            with gunicorn_starter(pg_url, tmp_path) as start:
                server = await asyncio.to_thread(
                    start,
                    CHATSERVICE_MAX_REQUESTS="7",
                    CHATSERVICE_MAX_REQUESTS_JITTER="0",
                    CHATSERVICE_ECHO_TOKEN_DELAY=WORD_DELAY,
                )
                targets = {
                    "chatservice": f"127.0.0.1:{server.port}",
                    "chatservice-operator": f"127.0.0.1:{operator_metrics}",
                }
                with prometheus_server(targets, tmp_path) as prometheus:
                    await cluster.create(CHATSERVICES, body(image=OLD))
                    await asyncio.to_thread(
                        check_service, prometheus, server, tmp_path / f"metrics-{server.port}"
                    )
                    job = job_for(OLD)
                    await eventually(lambda: cluster.get(JOBS, job), message="the migration Job")
                    await cluster.complete_job(job)
                    await asyncio.to_thread(check_operator, prometheus)


def check_service(prometheus: Prometheus, server: Gunicorn, metrics_dir: Path) -> None:
    # One request of each kind first, so that every series exists before the measured window:
    # increase() over a window that starts and ends on scrapes is then exact, not extrapolated.
    send_each_kind(server, 1, 1, 1)
    start = last_scrape_at(prometheus, 3)
    send_each_kind(server, SUCCESSES, NOT_FOUND, UNAUTHENTICATED)
    requests = SUCCESSES + NOT_FOUND + UNAUTHENTICATED
    end = last_scrape_at(prometheus, 3 + requests)
    window = f"[{round((end - start) * 1000)}ms]"

    def at_end(expr: str) -> float | None:
        return prometheus.value(expr, at=end)

    completions = f"increase(chatservice_chat_completions_total{window})"
    assert at_end(f"sum({completions})") == pytest.approx(requests)
    by_outcome = prometheus.query(f"sum by (outcome) ({completions})", at=end)["result"]
    # The outcomes that did not happen are there too, at 0 (published from each worker's start).
    happened = {r["metric"]["outcome"]: float(r["value"][1]) for r in by_outcome}
    assert {outcome: n for outcome, n in happened.items() if n} == pytest.approx(
        {"success": SUCCESSES, "not_found": NOT_FOUND, "unauthenticated": UNAUTHENTICATED}
    )
    error_ratio = (
        f'sum(increase(chatservice_chat_completions_total{{outcome!="success"}}{window}))'
        f" / sum({completions})"
    )
    assert at_end(error_ratio) == pytest.approx((NOT_FOUND + UNAUTHENTICATED) / requests)
    http = f"sum(increase(chatservice_http_requests_total{{{CHAT}}}{window}))"
    assert at_end(http) == pytest.approx(requests)
    tokens = f'sum(increase(chatservice_tokens_total{{kind="completion"}}{window}))'
    assert at_end(tokens) == pytest.approx(2 * SUCCESSES)

    latency = f"chatservice_http_request_duration_seconds_bucket{{{CHAT}}}{window}"
    buckets = f"sum by (le) (increase({latency}))"
    # The median is a success (28 of 40 requests), the 10th percentile a refusal.
    median = at_end(f"histogram_quantile(0.5, {buckets})")
    assert median is not None
    assert 0.25 < median <= 0.5
    tenth = at_end(f"histogram_quantile(0.1, {buckets})")
    assert tenth is not None
    assert tenth < 0.25

    worker_pids = {p.stem.rsplit("_", 1)[-1] for p in metrics_dir.glob("counter_*.db")}
    assert len(worker_pids) > 2, "the requests should have spanned several worker lifetimes"


def check_operator(prometheus: Prometheus) -> None:
    def migrated() -> bool:
        expr = 'sum(chatservice_operator_migrations_total{outcome="succeeded"})'
        return prometheus.value(expr) == 1

    prometheus.wait_for("the migration that succeeded", migrated)
    assert prometheus.value('up{job="chatservice-operator"}') == 1
    assert prometheus.value('sum(chatservice_operator_migrations_total{outcome="started"})') == 1
    reconciles = prometheus.value('sum(chatservice_operator_reconciles_total{outcome="success"})')
    assert reconciles is not None
    assert reconciles >= 1
    assert prometheus.value("sum(chatservice_operator_rollbacks_total)") == 0
    # Outcomes that have not happened are series at 0, so the first one is an increase.
    assert prometheus.value('sum(chatservice_operator_migrations_total{outcome="failed"})') == 0
    assert prometheus.value('sum(chatservice_operator_reconciles_total{outcome="error"})') == 0
