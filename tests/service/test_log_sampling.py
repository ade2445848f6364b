"""Repeated warnings and errors are limited per kind; access lines never are."""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import Callable
from typing import Any

import httpx

from chatservice.observability.log_sampling import RepeatFilter
from tests.service.gunicorn_server import Gunicorn
from tests.service.stub_upstream import StubUpstream


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _record(message: str, level: int = logging.ERROR, exc: BaseException | None = None) -> Any:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord("chatservice.x", level, __file__, 1, message, ("a",), exc_info)


def test_a_repeated_error_is_written_burst_times_a_window_then_counted() -> None:
    clock = Clock()
    repeats = RepeatFilter(burst=3, window=60, clock=clock)
    passed = [repeats.filter(_record("upstream %s failed")) for _ in range(10)]
    assert passed == [True] * 3 + [False] * 7

    clock.now += 61
    first = _record("upstream %s failed")
    assert repeats.filter(first)
    assert first.suppressed == 7, "the first line of the next window says what was dropped"
    second = _record("upstream %s failed")
    assert repeats.filter(second)
    assert not hasattr(second, "suppressed")


def test_kinds_are_counted_apart_and_info_lines_always_pass() -> None:
    repeats = RepeatFilter(burst=1, window=60, clock=Clock())
    assert repeats.filter(_record("one thing"))
    assert not repeats.filter(_record("one thing"))
    assert repeats.filter(_record("another thing"))
    assert repeats.filter(_record("one thing", exc=ValueError("x"))), "another exception type"
    assert all(repeats.filter(_record("request", level=logging.INFO)) for _ in range(100))


def test_zero_means_no_limit() -> None:
    repeats = RepeatFilter(burst=0, window=60, clock=Clock())
    assert all(repeats.filter(_record("same")) for _ in range(100))


def test_a_failing_upstream_logs_a_few_error_lines_and_every_access_line(
    start_gunicorn: Callable[..., Gunicorn], upstream: StubUpstream
) -> None:
    routes = json.dumps([{"name": "upstream", "backend": "openai", "base_url": upstream.base_url}])
    server = start_gunicorn(
        CHATSERVICE_MODELS=routes, CHATSERVICE_WORKERS="1", CHATSERVICE_LOG_REPEATS_PER_MINUTE="4"
    )
    requests = 40
    upstream.plan[:] = ["status:500"] * requests
    ask = {"model": "upstream", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.api, headers=headers, timeout=10) as client:
        statuses = [client.post("/chat/completions", json=ask).status_code for _ in range(requests)]
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)

    assert statuses == [502] * requests
    entries = [json.loads(line) for line in server.log.read_text().splitlines() if line[:1] == "{"]
    access = [e for e in entries if e["logger"] == "chatservice.access" and e["method"] == "POST"]
    assert len(access) == requests, "every request keeps its access line"
    upstream_errors = [e for e in entries if e.get("upstream_status") == 500]
    assert len(upstream_errors) == 4, "the same upstream error, 4 times a minute at most"
