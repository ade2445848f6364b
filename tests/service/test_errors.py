"""Unexpected failures: a 500 that reveals nothing, and a log line that has everything."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from chatservice.main import create_app
from chatservice.observability.logs import JsonFormatter
from tests.service.harness import AUTH, make_settings, serve

SECRET_DETAIL = "password=hunter2 at db.internal:5432"


async def test_a_500_says_nothing_internal_and_logs_the_traceback_with_the_request_id(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_settings(pg_url))

    async def broken() -> None:  # a bug, as any route could have one
        raise RuntimeError(SECRET_DETAIL)

    app.add_api_route("/api/v1/broken", broken)
    caplog.set_level(logging.ERROR, logger="chatservice.errors")
    async with serve(app) as http:
        response = await http.get("/api/v1/broken", headers=AUTH)

    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    request_id = response.headers["x-request-id"]

    record = next(r for r in caplog.records if r.name == "chatservice.errors")
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == request_id
    assert SECRET_DETAIL in line["traceback"]


async def test_a_bug_in_the_chat_route_is_the_same_500(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The chat route is answered outside FastAPI's request handling (direct_routes.py):
    what it does not handle still ends as the one 500 with the request id."""
    app = create_app(make_settings(pg_url))
    caplog.set_level(logging.ERROR, logger="chatservice.errors")
    async with serve(app) as http:

        async def broken(*args: object) -> None:
            raise RuntimeError(SECRET_DETAIL)

        app.state.runtime.accounting.admit = broken
        response = await http.post(
            "/v1/chat/completions",
            headers=AUTH,
            json={"model": "echo", "messages": [{"role": "user", "content": "hi"}]},
        )

    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "hunter2" not in response.text
    record = next(r for r in caplog.records if r.name == "chatservice.errors")
    line = json.loads(JsonFormatter().format(record))
    assert line["request_id"] == response.headers["x-request-id"]
    assert SECRET_DETAIL in line["traceback"]


async def test_client_request_id_is_echoed_when_safe(client: Any) -> None:
    ok = await client.get("/api/v1/health/live", headers={"X-Request-ID": "trace-abc.123"})
    assert ok.headers["x-request-id"] == "trace-abc.123"
    unsafe = await client.get("/api/v1/health/live", headers={"X-Request-ID": "a b\tc"})
    assert unsafe.headers["x-request-id"] != "a b\tc"


async def test_access_log_is_one_json_line_without_keys_or_content(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="chatservice.access")
    await client.post(
        "/api/v1/chat/completions",
        headers=AUTH,
        json={"model": "echo", "messages": [{"role": "user", "content": "private words"}]},
    )
    records = [r for r in caplog.records if r.name == "chatservice.access"]
    assert len(records) == 1
    line = JsonFormatter().format(records[0])
    entry = json.loads(line)
    assert entry["route"] == "/api/v1/chat/completions"
    assert entry["method"] == "POST"
    assert entry["status"] == 200
    assert entry["duration_ms"] > 0
    assert entry["request_id"]
    assert "private words" not in line
    assert AUTH["Authorization"].split()[1] not in line


async def test_cors_allows_only_listed_origins(open_client: Callable[..., Any]) -> None:
    async with open_client(cors_origins=["https://app.example"]) as http:
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = await http.options(
            "/api/v1/chat/completions", headers={"Origin": "https://app.example", **preflight}
        )
        denied = await http.options(
            "/api/v1/chat/completions", headers={"Origin": "https://evil.example", **preflight}
        )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in denied.headers


async def test_no_redirect_reflects_the_host(client: Any) -> None:
    response = await client.get("/api/v1/health", headers={"Host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "evil.example" not in response.text
    assert response.json()["error"]["code"] == "unknown_url"


PREFLIGHT_SDK = {
    "Origin": "https://app.example",
    "Access-Control-Request-Method": "POST",
    # What the official OpenAI JS SDK asks for from a browser.
    "Access-Control-Request-Headers": "authorization,content-type,x-stainless-arch,"
    "x-stainless-lang,x-stainless-os,x-stainless-package-version,x-stainless-retry-count,"
    "x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout",
}


async def test_cors_preflight_allows_the_openai_sdk_headers(
    open_client: Callable[..., Any],
) -> None:
    async with open_client(cors_origins=["https://app.example"]) as http:
        allowed = await http.options("/api/v1/chat/completions", headers=PREFLIGHT_SDK)
        other_header = await http.options(
            "/api/v1/chat/completions",
            headers={**PREFLIGHT_SDK, "Access-Control-Request-Headers": "x-internal-token"},
        )
        other_origin = await http.options(
            "/api/v1/chat/completions", headers={**PREFLIGHT_SDK, "Origin": "null"}
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-stainless-retry-count" in allowed.headers["access-control-allow-headers"]
    for refused in (other_header, other_origin):
        assert refused.status_code == 400
        assert refused.headers["content-type"] == "application/json"
        assert refused.json()["error"]["type"] == "invalid_request_error"
    assert "x-internal-token" in other_header.json()["error"]["message"]
    assert "origin" in other_origin.json()["error"]["message"]
