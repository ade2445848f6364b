"""The environment the operator gives the service's pods parses into the service's Settings and
means what the ChatService says: a renamed variable on either side fails here, not on a cluster."""

from __future__ import annotations

import http.server
import os
import secrets
import threading
from typing import Any, ClassVar

import pytest

from chatservice.config import Environment, Settings
from chatservice.observability import tracing
from chatservice_operator import builders
from tests.operator.operator_specs import chatservice

# What the pod's secretKeyRefs would resolve to: (Secret name, key) -> value.
SECRETS = {
    ("db", "url"): "postgresql+asyncpg://chat:pw@postgres:5432/chat",
    ("adm", "key"): secrets.token_urlsafe(32),
    ("vllm", "token"): "sk-vllm-token",
    ("otlp", "headers"): "authorization=Bearer otlp-token",
}
CS = chatservice(workers=5, logLevel="warning", gracefulTimeoutSeconds=77)


def container_env(container: dict[str, Any], configmap: dict[str, Any]) -> dict[str, str]:
    """The variables a container starts with, as the kubelet resolves them."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert source["configMapRef"]["name"] == configmap["metadata"]["name"]
        env.update(configmap["data"])
    for variable in container["env"]:
        if "value" in variable:
            env[variable["name"]] = variable["value"]
        else:
            ref = variable["valueFrom"]["secretKeyRef"]
            env[variable["name"]] = SECRETS[(ref["name"], ref["key"])]
    return env


def settings_from(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name in [n for n in os.environ if n.startswith("CHATSERVICE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def served_env() -> dict[str, str]:
    configmap = builders.build_configmap(CS)
    deployment = builders.build_deployment(CS, CS.spec.image, "sum")
    return container_env(deployment["spec"]["template"]["spec"]["containers"][0], configmap)


def test_every_variable_the_operator_sets_is_one_the_service_reads() -> None:
    env = served_env()
    routes = Settings.model_validate({"models": env["CHATSERVICE_MODELS"]}).models
    key_variables = {route.api_key_env for route in routes if route.api_key_env}
    fields = {f"CHATSERVICE_{name.upper()}" for name in Settings.model_fields}
    unknown = {
        name for name in env if name.startswith("CHATSERVICE_") and name not in fields
    } - key_variables
    assert unknown == set(), "Settings ignores unknown variables: a renamed one is lost silently"


def test_the_serving_pods_settings_mean_what_the_chatservice_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(served_env(), monkeypatch)
    spec = CS.spec
    assert settings.environment is Environment.PRODUCTION
    assert settings.database_url == SECRETS[("db", "url")]
    assert settings.admin_api_key.get_secret_value() == SECRETS[("adm", "key")]
    assert settings.workers == spec.workers
    assert settings.log_level.lower() == spec.log_level
    assert settings.graceful_timeout == spec.graceful_timeout_seconds
    assert settings.upstream_total_timeout <= spec.graceful_timeout_seconds
    assert settings.allow_echo_in_production, "the spec names an echo backend"
    routes = {route.name: route for route in settings.models}
    assert list(routes) == [backend.model for backend in spec.inference.backends]
    for backend in spec.inference.backends:
        route = routes[backend.model]
        assert route.backend == backend.backend
        assert route.base_url == backend.base_url
        assert route.upstream_model == (backend.upstream_model or backend.model)
        if backend.max_tokens_field is not None:
            assert route.max_tokens_field == backend.max_tokens_field
        assert route.input_price_per_million_tokens == (backend.input_price_per_million_tokens or 0)
        assert route.output_price_per_million_tokens == (
            backend.output_price_per_million_tokens or 0
        )
        expected_key = (
            SECRETS[(backend.api_key_secret_ref.name, backend.api_key_secret_ref.key)]
            if backend.api_key_secret_ref
            else None
        )
        assert route.upstream_api_key() == expected_key


POOLED = chatservice(
    inference={
        "backends": [
            {
                "model": "llama",
                "endpoints": [
                    {"baseURL": "http://10.0.0.5:8000/v1", "maxConcurrency": 64},
                    {"baseURL": "http://10.0.0.6:8000/v1", "weight": 2},
                ],
                "fallbacks": ["small"],
                "apiKeySecretRef": {"name": "vllm", "key": "token"},
            },
            {"model": "small", "baseURL": "http://small:8000/v1"},
        ]
    }
)


def test_endpoints_and_fallbacks_reach_the_service_as_the_chatservice_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configmap = builders.build_configmap(POOLED)
    deployment = builders.build_deployment(POOLED, POOLED.spec.image, "sum")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    settings = settings_from(container_env(container, configmap), monkeypatch)
    llama = settings.routes["llama"]
    assert llama.base_url is None
    assert [(e.base_url, e.weight, e.max_concurrency) for e in llama.upstream_endpoints()] == [
        ("http://10.0.0.5:8000/v1", 1.0, 64),
        ("http://10.0.0.6:8000/v1", 2.0, None),
    ]
    assert llama.fallbacks == ("small",)
    assert llama.upstream_api_key() == SECRETS[("vllm", "token")]  # shared by its endpoints
    # The single-URL shape is unchanged: one endpoint.
    assert [e.base_url for e in settings.routes["small"].upstream_endpoints()] == [
        "http://small:8000/v1"
    ]


def test_discovery_reaches_the_service_as_the_chatservice_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    discovered = chatservice(
        inference={
            "backends": [
                {"model": "llama", "baseURL": "http://vllm.models.svc:8000/v1", "discovery": "dns"},
                {
                    "model": "pool",
                    "endpoints": [{"baseURL": "http://tgi:80/v1", "discovery": "dns"}],
                },
            ]
        }
    )
    configmap = builders.build_configmap(discovered)
    deployment = builders.build_deployment(discovered, discovered.spec.image, "sum")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    settings = settings_from(container_env(container, configmap), monkeypatch)
    assert [
        (e.base_url, e.discovery)
        for name in ("llama", "pool")
        for e in settings.routes[name].upstream_endpoints()
    ] == [("http://vllm.models.svc:8000/v1", "dns"), ("http://tgi:80/v1", "dns")]


def test_the_migration_jobs_settings_parse_for_the_same_database(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = builders.build_job(CS)
    container = job["spec"]["template"]["spec"]["containers"][0]
    settings = settings_from(container_env(container, {"metadata": {}, "data": {}}), monkeypatch)
    assert settings.environment is Environment.PRODUCTION
    assert settings.database_url == SECRETS[("db", "url")]
    assert settings.log_level.lower() == CS.spec.log_level


def _only(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith(("CHATSERVICE_", "OTEL_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_without_tracing_in_the_spec_the_pods_export_no_traces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _only(served_env(), monkeypatch)
    assert not tracing.tracing_requested()
    assert not Settings().capture_message_content


class _OtlpReceiver(http.server.BaseHTTPRequestHandler):
    """A loopback OTLP/HTTP receiver: records each export's path and headers, answers 200."""

    received: ClassVar[list[tuple[str, dict[str, str]]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


def test_tracing_in_the_spec_exports_to_its_endpoint_with_its_sampler_headers_and_capture(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _OtlpReceiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    traced = chatservice(
        tracing={
            "otlpEndpoint": f"http://127.0.0.1:{receiver.server_port}",
            "sampleRatio": 0.25,
            "headersSecretRef": {"name": "otlp", "key": "headers"},
            "captureMessageContent": True,
        }
    )
    deployment = builders.build_deployment(traced, traced.spec.image, "sum")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    _only(container_env(container, builders.build_configmap(traced)), monkeypatch)

    assert tracing.tracing_requested()
    assert Settings().capture_message_content
    provider = tracing.build_provider()
    try:
        description = provider.sampler.get_description()
        assert description.startswith("ParentBased{root:TraceIdRatioBased{0.25}")
        assert provider.resource.attributes["service.name"] == "chat"
        assert provider.resource.attributes["k8s.namespace.name"] == "ns"
        tracer = provider.get_tracer("contract")
        sampled = 0
        for _ in range(200):  # a quarter sampled: 0 of 200 has a chance of 1e-25
            with tracer.start_as_current_span("request") as span:
                sampled += span.get_span_context().trace_flags.sampled
        assert 0 < sampled < 200
        assert provider.force_flush(10_000)
    finally:
        provider.shutdown()
        receiver.shutdown()
    assert _OtlpReceiver.received, "nothing was exported"
    for path, headers in _OtlpReceiver.received:
        assert path == "/v1/traces"
        assert headers["authorization"] == "Bearer otlp-token"
