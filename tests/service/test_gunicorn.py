"""The real process model: gunicorn with two uvicorn workers, the `openai` SDK as client."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.service.gunicorn_server import BackgroundStream, Gunicorn

WORDS = 40


def test_openai_sdk_json_stream_models_and_errors(start_gunicorn: Callable[..., Gunicorn]) -> None:
    client = start_gunicorn().sdk()

    completion = client.chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "hello from the sdk"}]
    )
    assert completion.choices[0].message.content == "hello from the sdk"
    assert completion.usage is not None
    assert completion.usage.total_tokens == 8

    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "streamed words"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "streamed words"
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2

    assert [m.id for m in client.models.list()] == ["echo"]
    assert client.models.retrieve("echo").id == "echo"

    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(
            model="echo", messages=[{"role": "user", "content": "x"}], temperature=3
        )
    assert bad.value.param == "temperature"
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=client.base_url, api_key="sk-wrong", max_retries=0).models.list()


def _samples(server: Gunicorn) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = httpx.get(server.url + "/metrics", timeout=5).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _post_counted_request(server: Gunicorn) -> httpx.Response:
    # A new connection per request, so gunicorn's workers share them out. A connection that
    # a worker accepted just as it recycled itself can be reset before the app sees the
    # request (gunicorn issue #2567): that request never happened, so it is sent again.
    for _ in range(3):
        try:
            return httpx.post(
                server.api + "/chat/completions",
                headers={"Authorization": f"Bearer {server.key}", "Connection": "close"},
                json={
                    "model": "echo",
                    "messages": [{"role": "user", "content": "count me please"}],
                },
                timeout=10,
            )
        except (httpx.ReadError, httpx.RemoteProtocolError):
            time.sleep(0.1)
    raise AssertionError("the request was reset three times")


def test_the_series_alerts_divide_by_are_published_at_zero_before_any_request(
    start_gunicorn: Callable[..., Gunicorn],
) -> None:
    # Without them, increase() misses the first failures after a start: no 0 -> 1 step.
    samples = _samples(start_gunicorn())
    for stream in ("true", "false"):
        for outcome in ("success", "upstream_error", "timeout", "unavailable"):
            labels = frozenset({("model", "echo"), ("stream", stream), ("outcome", outcome)})
            assert samples[("chatservice_chat_completions_total", labels)] == 0
    for kind in ("prompt", "completion"):
        tokens = frozenset({("model", "echo"), ("kind", kind)})
        assert samples[("chatservice_tokens_total", tokens)] == 0


def test_metrics_are_exact_across_workers_and_worker_restarts(
    start_gunicorn: Callable[..., Gunicorn],
) -> None:
    # Each worker restarts after 7 requests, so 40 requests span several worker lifetimes.
    server = start_gunicorn(CHATSERVICE_MAX_REQUESTS="7", CHATSERVICE_MAX_REQUESTS_JITTER="0")
    requests = 40
    for _ in range(requests):
        assert _post_counted_request(server).status_code == 200

    samples = _samples(server)
    route = {("method", "POST"), ("route", "/api/v1/chat/completions")}
    assert samples[("chatservice_http_requests_total",
                    frozenset({*route, ("status_class", "2xx")}))] == requests  # fmt: skip
    assert samples[("chatservice_chat_completions_total",
                    frozenset({("model", "echo"), ("stream", "false"),
                               ("outcome", "success")}))] == requests  # fmt: skip
    tokens = frozenset({("model", "echo"), ("kind", "completion")})
    assert samples[("chatservice_tokens_total", tokens)] == 3 * requests
    in_flight = samples[("chatservice_http_requests_in_flight", frozenset({("method", "POST")}))]
    assert in_flight == 0

    pids = {p.stem.rsplit("_", 1)[-1] for p in server.metrics_dir.glob("counter_*.db")}
    assert len(pids) > 2, "the requests should have been served by several worker processes"


def test_sigterm_lets_a_running_stream_finish(start_gunicorn: Callable[..., Gunicorn]) -> None:
    server = start_gunicorn(CHATSERVICE_ECHO_TOKEN_DELAY="0.05")
    words = " ".join(f"w{i}" for i in range(WORDS))
    stream = BackgroundStream(server, words)
    assert stream.first_event.wait(15)
    server.process.send_signal(signal.SIGTERM)
    stream.join()

    received = stream.received
    assert stream.failures == []
    assert received[-1] == "[DONE]"
    text = "".join(
        json.loads(event)["choices"][0]["delta"].get("content", "") for event in received[:-1]
    )
    assert text == words
    assert server.process.wait(timeout=30) == 0


def test_logs_are_json_lines_without_secrets(start_gunicorn: Callable[..., Gunicorn]) -> None:
    server = start_gunicorn()
    server.sdk().chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "confidential prompt"}]
    )
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)
    log = server.log.read_text()
    assert server.key not in log
    assert "confidential prompt" not in log
    entries = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    access = [e for e in entries if e["logger"] == "chatservice.access"]
    assert [(e["route"], e["status"]) for e in access if e["method"] == "POST"] == [
        ("/api/v1/chat/completions", 200)
    ]
