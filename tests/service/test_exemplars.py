"""Exemplars: the latency histograms' buckets name the trace of a request that fell in them, in
the OpenMetrics exposition of a real gunicorn (two workers, multiprocess metrics) with tracing
on, and a real Prometheus stores them; without tracing there are none."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from tests.ports import free_port
from tests.service.gunicorn_server import Gunicorn
from tests.service.prometheus import prometheus_server

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
LATENCY = ("chatservice_http_request_duration_seconds", "chatservice_time_to_first_token_seconds")


class _AcceptSpans(BaseHTTPRequestHandler):
    """An OTLP/HTTP endpoint that takes every export and keeps nothing: the trace ids the test
    checks come from the service's own access log."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def span_sink() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _AcceptSpans)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def traced_gunicorn(start: Callable[..., Gunicorn], sink: str) -> Gunicorn:
    return start(
        OTEL_EXPORTER_OTLP_ENDPOINT=sink,
        OTEL_BSP_SCHEDULE_DELAY="200",
        CHATSERVICE_LOG_LEVEL="INFO",
    )


def send_chats(server: Gunicorn, rounds: int) -> None:
    """JSON and streamed completions on new connections, so both workers serve some."""
    body = {"model": "echo", "messages": [{"role": "user", "content": "hello exemplar"}]}
    headers = {"Authorization": f"Bearer {server.key}"}
    for _ in range(rounds):
        for stream in (False, True):
            response = httpx.post(
                server.api + "/chat/completions",
                json={**body, "stream": stream},
                headers=headers,
                timeout=10,
            )
            assert response.status_code == 200


def logged_trace_ids(server: Gunicorn) -> set[str]:
    ids = set()
    for line in server.log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("logger") == "chatservice.access" and "trace_id" in entry:
                ids.add(entry["trace_id"])
    return ids


def scrape_exemplars(server: Gunicorn) -> dict[str, list[dict[str, str]]]:
    """Exemplar labels by histogram, from the OpenMetrics exposition (parsed by
    prometheus_client's OpenMetrics parser, which rejects malformed exemplars)."""
    response = httpx.get(server.url + "/metrics", headers={"Accept": OPENMETRICS}, timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    found: dict[str, list[dict[str, str]]] = {}
    # The OpenMetrics parser is untyped; what it yields is checked by the loop's attributes.
    families: Iterable[Any] = text_string_to_metric_families(response.text)  # type: ignore[no-untyped-call]
    for family in families:
        for sample in family.samples:
            if sample.exemplar is not None:
                assert sample.name.endswith("_bucket")
                found.setdefault(family.name, []).append(dict(sample.exemplar.labels))
    return found


def test_latency_buckets_carry_the_trace_ids_of_requests(
    start_gunicorn: Callable[..., Gunicorn],
) -> None:
    with span_sink() as sink:
        server = traced_gunicorn(start_gunicorn, sink)
        send_chats(server, rounds=6)
        time.sleep(1.1)  # a worker publishes its exemplars at most once a second
        send_chats(server, rounds=2)
        exemplars = scrape_exemplars(server)
        traces = logged_trace_ids(server)

    assert set(LATENCY) <= set(exemplars), exemplars
    for name in LATENCY:
        for labels in exemplars[name]:
            # Every exemplar points at a request this service served and logged.
            assert labels["trace_id"] in traces
            assert len(labels["span_id"]) == 16
    # The text format (what a scraper that does not ask for OpenMetrics gets) is unchanged.
    plain = httpx.get(server.url + "/metrics", timeout=5)
    assert plain.headers["content-type"].startswith("text/plain")
    assert "trace_id" not in plain.text


def test_prometheus_stores_the_exemplars(
    start_gunicorn: Callable[..., Gunicorn], tmp_path: Path
) -> None:
    with span_sink() as sink:
        server = traced_gunicorn(start_gunicorn, sink)
        target = server.url.removeprefix("http://")
        with prometheus_server(
            {"chatservice": target}, tmp_path, ["--enable-feature=exemplar-storage"]
        ) as prometheus:
            send_chats(server, rounds=4)
            time.sleep(1.1)
            send_chats(server, rounds=2)
            # The chat route's: Prometheus's own scrapes are traced requests too.
            selector = (
                'chatservice_http_request_duration_seconds_bucket{route="/api/v1/chat/completions"}'
            )

            def stored() -> list[str]:
                response = httpx.get(
                    prometheus.url + "/api/v1/query_exemplars",
                    params={"query": selector, "start": time.time() - 600, "end": time.time()},
                    timeout=5,
                )
                return [
                    exemplar["labels"]["trace_id"]
                    for series in response.json()["data"]
                    for exemplar in series["exemplars"]
                ]

            prometheus.wait_for("exemplars", lambda: bool(stored()))
            assert set(stored()) <= logged_trace_ids(server)


def test_no_exemplars_without_tracing(start_gunicorn: Callable[..., Gunicorn]) -> None:
    server = start_gunicorn()
    send_chats(server, rounds=3)
    time.sleep(1.1)
    send_chats(server, rounds=1)
    assert scrape_exemplars(server) == {}
    assert not list(server.metrics_dir.glob("exemplars_*"))


@pytest.fixture(autouse=True)
def _no_otel_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tracing is what these tests switch; the environment they run in must not.
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
