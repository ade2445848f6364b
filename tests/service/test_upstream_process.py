"""Upstream failures as a real gunicorn process logs them, and streams cut by its shutdown."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import httpx

from tests.service.gunicorn_server import BackgroundStream, Gunicorn
from tests.service.stub_upstream import StubUpstream, echo_and_stub_routes


def _entries(server: Gunicorn) -> list[dict[str, Any]]:
    lines = server.log.read_text().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_every_line_of_a_failed_request_has_its_request_id_and_outcome(
    start_gunicorn: Callable[..., Gunicorn], upstream: StubUpstream
) -> None:
    server = start_gunicorn(
        CHATSERVICE_MODELS=echo_and_stub_routes(upstream, api_key="sk-upstream-secret"),
        CHATSERVICE_WORKERS="1",
    )
    headers = {"Authorization": f"Bearer {server.key}"}
    ask = {"model": "upstream", "messages": [{"role": "user", "content": "hi"}]}
    upstream.plan[:] = ["status:500", "unfinished_stream", "status:401"]
    failed = httpx.post(server.api + "/chat/completions", headers=headers, json=ask, timeout=10)
    cut = httpx.post(server.api + "/chat/completions", headers=headers,
                     json={**ask, "stream": True}, timeout=10)  # fmt: skip
    refused = httpx.post(server.api + "/chat/completions", headers=headers, json=ask, timeout=10)
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)

    assert (failed.status_code, cut.status_code, refused.status_code) == (502, 200, 502)
    entries = _entries(server)
    expected = {
        failed.headers["x-request-id"]: "upstream_error",
        cut.headers["x-request-id"]: "upstream_error",
        refused.headers["x-request-id"]: "upstream_auth_failed",
    }
    for request_id, outcome in expected.items():
        lines = [e for e in entries if e.get("request_id") == request_id]
        assert len(lines) >= 2, f"the failure of {request_id} left no line beside the access line"
        assert {e.get("outcome") for e in lines} == {outcome}
    upstream_lines = [e for e in entries if e.get("upstream_status") == 500]
    assert upstream_lines[0]["request_id"] == failed.headers["x-request-id"]
    assert "stub says 500" in upstream_lines[0]["upstream_body"]
    access = {e["request_id"]: e for e in entries if e["logger"] == "chatservice.access"}
    assert access[cut.headers["x-request-id"]]["status"] == 200  # the stream had begun
    assert "sk-upstream-secret" not in server.log.read_text()


def test_a_stream_outlasting_the_shutdown_grace_ends_with_an_error_event(
    start_gunicorn: Callable[..., Gunicorn],
) -> None:
    server = start_gunicorn(CHATSERVICE_ECHO_TOKEN_DELAY="0.2", CHATSERVICE_GRACEFUL_TIMEOUT="3")
    words = " ".join(f"w{i}" for i in range(100))  # 20 s of stream, far past the grace
    stream = BackgroundStream(server, words)
    assert stream.first_event.wait(15)
    server.process.send_signal(signal.SIGTERM)
    stream.join()

    received = stream.received
    assert stream.failures == []
    last = json.loads(received[-1])
    assert last["error"]["code"] == "server_shutting_down"
    assert len(received) < 100
    server.process.wait(timeout=30)
