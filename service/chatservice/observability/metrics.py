"""Prometheus metrics, correct across gunicorn workers through multiprocess mode.

Labels are bounded: route templates, configured model names and status classes only.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator
from typing import TypeVar, get_args

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Metric,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.openmetrics import exposition as openmetrics

from chatservice.accounting.limits import LimitKind
from chatservice.accounting.schemas import Scope
from chatservice.observability import exemplars

MetricT = TypeVar("MetricT", bound=MetricWrapperBase)

# Chat latencies span milliseconds (echo, errors) to minutes (long generations).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# Gateway overhead should stay far below a millisecond; these buckets resolve that.
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)

HTTP_REQUESTS = Counter(
    "chatservice_http_requests_total",
    "HTTP requests by method, route template and status class.",
    ["method", "route", "status_class"],
)
HTTP_DURATION = Histogram(
    "chatservice_http_request_duration_seconds",
    "HTTP request duration until the response (or stream) ended.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge(
    "chatservice_http_requests_in_flight",
    "HTTP requests being served now (by method: the route is known only after routing).",
    ["method"],
    multiprocess_mode="livesum",
)
CHAT_COMPLETIONS = Counter(
    "chatservice_chat_completions_total",
    "Chat completion requests by model, streaming or not, and outcome (every request, also "
    "those refused before the backend: model and stream are `-` when not known).",
    ["model", "stream", "outcome"],
)
TOKENS = Counter(
    "chatservice_tokens_total",
    "Tokens by model and kind (prompt or completion), as reported by the backend or estimated.",
    ["model", "kind"],
)
ESTIMATED_TOKENS = Counter(
    "chatservice_tokens_estimated_total",
    "The part of chatservice_tokens_total this service computed (tokenizer or estimate): "
    "the upstream sent no usage.",
    ["model", "kind"],
)
TIME_TO_FIRST_TOKEN = Histogram(
    "chatservice_time_to_first_token_seconds",
    "Time from the request to the first streamed content chunk.",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
UPSTREAM_ERRORS = Counter(
    "chatservice_upstream_errors_total",
    "Failed upstream calls by model and failure (connect, status, body, stream, timeout).",
    ["model", "error"],
)
GATEWAY_OVERHEAD = Histogram(
    "chatservice_gateway_overhead_seconds",
    "Time a chat completion spent in this service, outside the upstream call.",
    ["model"],
    buckets=_OVERHEAD_BUCKETS,
)
ROUTE_QUEUE_DEPTH = Gauge(
    "chatservice_route_queue_depth",
    "Requests waiting because every endpoint of the model is at its concurrency cap.",
    ["model"],
    multiprocess_mode="livesum",
)
ROUTE_QUEUE_WAIT = Histogram(
    "chatservice_route_queue_wait_seconds",
    "Time a request waited for a free endpoint of its model (served or refused after).",
    ["model"],
    buckets=_LATENCY_BUCKETS,
)
# Each worker ejects endpoints on its own requests' failures (endpoint_pool.py), so workers
# disagree; `livemax` publishes the worker that has ejected the most, the one closest to having
# nowhere to send a model's requests. A sum would count one endpoint once per worker, and a
# minimum would hide a failing endpoint until every worker had failed on it. The configured
# count is the same in every worker, so its maximum is that count.
ROUTE_ENDPOINTS = Gauge(
    "chatservice_route_endpoints",
    "Configured upstream endpoints of the model.",
    ["model"],
    multiprocess_mode="livemax",
)
ROUTE_EJECTED_ENDPOINTS = Gauge(
    "chatservice_route_ejected_endpoints",
    "Endpoints of the model ejected and not trusted again yet (a successful trial request "
    "after the cooldown ends an ejection), in the worker that has ejected the most.",
    ["model"],
    multiprocess_mode="livemax",
)
ENDPOINT_EJECTIONS = Counter(
    "chatservice_endpoint_ejections_total",
    "Ejections of an endpoint of the model after consecutive failures or a failed trial.",
    ["model"],
)

SPEND = Counter(
    "chatservice_spend_usd_total",
    "Cost of chat completions in USD by model, from the routing table's prices.",
    ["model"],
)
LEDGER_QUEUED = Gauge(
    "chatservice_ledger_queued_events",
    "Usage ledger rows waiting to be written (queued or held while the database is down).",
    multiprocess_mode="livesum",
)
LEDGER_WRITTEN = Counter(
    "chatservice_ledger_written_events_total", "Usage ledger rows written to the database."
)
LEDGER_DROPPED = Counter(
    "chatservice_ledger_dropped_events_total",
    "Usage ledger rows dropped because a worker held `ledger_max_held` already.",
)
LEDGER_WRITE_FAILURES = Counter(
    "chatservice_ledger_write_failures_total",
    "Failed usage ledger batch writes (the rows are held and written again).",
)
LEDGER_WRITE_DURATION = Histogram(
    "chatservice_ledger_write_duration_seconds",
    "Time one batch of usage ledger rows took to write.",
    buckets=_LATENCY_BUCKETS,
)
RATE_LIMITED = Counter(
    "chatservice_rate_limited_requests_total",
    "Chat completions refused by a rate limit, by the limit (requests, tokens, concurrent) "
    "and the scope it was set on (key, user, team).",
    ["limit", "scope"],
)
OVER_BUDGET = Counter(
    "chatservice_over_budget_requests_total",
    "Chat completions from a key, user or team past its budget: `hard` ones were refused "
    "(429 insufficient_quota), `soft` ones served and counted.",
    ["scope", "budget"],
)
RATE_LIMIT_STORE_ERRORS = Counter(
    "chatservice_rate_limit_store_errors_total",
    "Rate limit checks the store (Redis or the pod's file) could not answer, by what the "
    "request got (`open`: let through, `closed`: 503).",
    ["mode"],
)

DNS_RESOLUTIONS = Counter(
    "chatservice_dns_resolutions_total",
    "Resolutions of discovered endpoints' DNS names, by model and outcome (`changed`, "
    "`unchanged`; `empty` and `failed` keep the last known endpoints).",
    ["model", "outcome"],
)


@functools.cache
def child(metric: MetricT, *labels: str) -> MetricT:
    """`metric.labels(*labels)`, remembered: prometheus_client checks the labels and takes a
    lock on every call, which added up to ~10 µs per chat completion. Labels are bounded, so
    this cache is too; nothing calls `remove()` or `clear()`, which would orphan a child."""
    return metric.labels(*labels)


def observe_latency(histogram: Histogram, value: float, *labels: str) -> None:
    """`child(histogram, *labels).observe(value)`, with the current trace as the bucket's
    exemplar when tracing is on (exemplars.py)."""
    child(histogram, *labels).observe(value)
    exemplars.record(histogram, labels, value)


# Outcomes the error-ratio alerts and dashboards count as failures, published at 0.
FAILED_OUTCOMES = (
    "unavailable",
    "upstream_rate_limited",
    "upstream_auth_failed",
    "upstream_unreachable",
    "upstream_invalid_response",
    "upstream_error",
    "timeout",
    "error",
)


def publish_initial_series(models: Iterable[str]) -> None:
    """Publish at 0 the series that queries divide or alert on: the accounting refusals, and
    for every configured model its outcomes, tokens and spend.

    A counter child exists only from its first increment, and `rate()`/`increase()` cannot see
    the step from nothing to 1: the first failures after a start would be invisible to an
    alert, and a dashboard would show a gap instead of 0. Labels come from the configuration
    and fixed sets, so the number of series stays bounded.
    """
    for method in ("GET", "POST"):
        child(HTTP_IN_FLIGHT, method)
    for scope in get_args(Scope):
        for kind in get_args(LimitKind):
            child(RATE_LIMITED, kind, scope)
        for budget in ("hard", "soft"):
            child(OVER_BUDGET, scope, budget)
    for mode in ("open", "closed"):
        child(RATE_LIMIT_STORE_ERRORS, mode)
    for model in models:
        child(SPEND, model)
        for stream in ("true", "false"):
            for outcome in ("success", *FAILED_OUTCOMES):
                child(CHAT_COMPLETIONS, model, stream, outcome)
        for kind in ("prompt", "completion"):
            child(TOKENS, model, kind)


def publish_route_series(model: str, endpoints: int) -> None:
    """A route of upstream endpoints: its endpoint count, and at 0 (as in
    publish_initial_series) its ejections, ejected endpoints and wait queue."""
    child(ROUTE_ENDPOINTS, model).set(endpoints)
    child(ROUTE_EJECTED_ENDPOINTS, model).set(0)
    child(ENDPOINT_EJECTIONS, model)
    child(ROUTE_QUEUE_DEPTH, model)
    child(ROUTE_QUEUE_WAIT, model)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def exposition(accept: str = "") -> tuple[bytes, str]:
    """The text exposition, or OpenMetrics (with exemplars) when the scraper asks for it; in
    multiprocess mode it adds up every worker's files."""
    registry: CollectorRegistry = REGISTRY
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    if "application/openmetrics-text" not in accept:
        return generate_latest(registry), CONTENT_TYPE_LATEST
    body = openmetrics.generate_latest(_WithExemplars(registry))  # type: ignore[no-untyped-call]
    return body, openmetrics.CONTENT_TYPE_LATEST


class _WithExemplars:
    """A registry's families with the exemplars attached, for the OpenMetrics encoder."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterator[Metric]:
        return exemplars.attach(self._registry.collect(), exemplars.newest())
