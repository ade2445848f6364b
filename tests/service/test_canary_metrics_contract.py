"""What the operator's canary reads from a pod is what the service's /metrics says: a real
gunicorn service serves each kind of request, and the operator's parser turns its exposition
into the figures a verdict uses. A renamed metric or outcome on either side fails here."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from openai.types.chat import ChatCompletionMessageParam

from chatservice_operator.identity import Track
from chatservice_operator.scrape import ServingPod, parse_exposition
from chatservice_operator.verdict import figures
from tests.service.gunicorn_server import Gunicorn
from tests.service.stub_upstream import StubUpstream, echo_and_stub_routes


def test_the_canary_reads_requests_errors_streams_and_latencies_from_a_real_pod(
    start_gunicorn: Callable[..., Gunicorn], upstream: StubUpstream
) -> None:
    server = start_gunicorn(CHATSERVICE_MODELS=echo_and_stub_routes(upstream))
    sdk = server.sdk()
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello there"}]
    for _ in range(3):
        sdk.chat.completions.create(model="echo", messages=messages)
    for _ in range(2):
        for _ in sdk.chat.completions.create(model="echo", messages=messages, stream=True):
            pass
    sdk.chat.completions.create(model="upstream", messages=messages)
    headers = {"Authorization": f"Bearer {server.key}"}
    upstream.plan[:] = ["status:500"] * 10  # every attempt, retries included
    failed = httpx.post(
        server.api + "/chat/completions",
        json={"model": "upstream", "messages": messages},
        headers=headers,
    )
    assert failed.status_code == 502
    refused = httpx.post(  # the client's mistake: not an error of the release
        server.api + "/chat/completions",
        json={"model": "no-such-model", "messages": messages},
        headers=headers,
    )
    assert refused.status_code == 404

    exposition = httpx.get(server.url + "/metrics", timeout=5).text
    sample = parse_exposition(ServingPod("chat-canary-0", Track.CANARY, "127.0.0.1", 0), exposition)
    assert (sample.requests, sample.errors) == (8, 1)
    assert (sample.streams, sample.completed_streams) == (2, 2)
    assert sample.time_to_first_token["+Inf"] == 2
    assert sample.added_latency["+Inf"] >= 1  # the upstream's calls
    measured = figures([sample])
    assert measured.error_ratio == 1 / 8
    assert measured.stream_completion_ratio == 1
    assert measured.time_to_first_token_p95 is not None
    assert measured.added_latency_p95 is not None
