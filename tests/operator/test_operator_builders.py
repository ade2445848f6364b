"""The child objects, compared whole: what the cluster gets is exactly what is asserted."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from chatservice_operator import builders, events, identity
from tests.operator.operator_specs import chatservice

LABELS = {
    "app.kubernetes.io/name": "chatservice",
    "app.kubernetes.io/instance": "chat",
    "app.kubernetes.io/component": "server",
    "app.kubernetes.io/managed-by": "chatservice-operator",
}
SELECTOR = {k: v for k, v in LABELS.items() if k != "app.kubernetes.io/managed-by"}
OWNER = {
    "apiVersion": "chatservice.dev/v1alpha1",
    "kind": "ChatService",
    "name": "chat",
    "uid": "uid-1",
    "controller": True,
    "blockOwnerDeletion": True,
}
POD_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "runAsGroup": 10001,
    "fsGroup": 10001,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
TMP = "/tmp"  # noqa: S108  (a mount path in a pod, not a file this test writes)
RESOURCES = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
DB_ENV = {
    "name": "CHATSERVICE_DATABASE_URL",
    "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}},
}
ADMIN_ENV = {
    "name": "CHATSERVICE_ADMIN_API_KEY",
    "valueFrom": {"secretKeyRef": {"name": "adm", "key": "key"}},
}


def meta(name: str = "chat", labels: dict[str, str] = LABELS) -> dict[str, Any]:
    return {"name": name, "namespace": "ns", "labels": labels, "ownerReferences": [OWNER]}


MODELS_JSON = json.dumps(
    [
        {
            "name": "llama",
            "backend": "openai",
            "base_url": "http://vllm:8000/v1",
            "upstream_model": "meta/llama",
            "max_tokens_field": "max_completion_tokens",
            "input_price_per_million_tokens": 0.5,
            "output_price_per_million_tokens": 1.5,
            "api_key_env": "CHATSERVICE_UPSTREAM_KEY_0",
        },
        {"name": "echo", "backend": "echo", "upstream_model": "echo"},
    ],
    separators=(",", ":"),
)


def test_configmap_carries_non_secret_settings_and_the_model_routes() -> None:
    assert builders.build_configmap(chatservice()) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": meta("chat-config"),
        "data": {
            "CHATSERVICE_ENVIRONMENT": "production",
            "CHATSERVICE_WORKERS": "2",
            "CHATSERVICE_MODELS": MODELS_JSON,
            "CHATSERVICE_GRACEFUL_TIMEOUT": "120",
            "CHATSERVICE_UPSTREAM_TOTAL_TIMEOUT": "120",
            "CHATSERVICE_ALLOW_ECHO_IN_PRODUCTION": "true",
            "CHATSERVICE_LOG_LEVEL": "info",
            "PROMETHEUS_MULTIPROC_DIR": "/var/run/chatservice/metrics",
            # Limits without Redis: a file the pod's workers share, on its writable /tmp.
            "CHATSERVICE_RATE_LIMIT_FILE": "/tmp/rate-limits.sqlite",  # noqa: S108
            "CHATSERVICE_RATE_LIMIT_FAILURE_MODE": "open",
        },
    }


def test_tracing_adds_the_standard_otel_variables_and_the_headers_secret() -> None:
    traced = chatservice(
        tracing={
            "otlpEndpoint": "http://otel:4318",
            "sampleRatio": 0.1,
            "headersSecretRef": {"name": "otlp", "key": "h"},
        }
    )
    data = builders.build_configmap(traced)["data"]
    otel = {name: value for name, value in data.items() if name.startswith("OTEL_")}
    assert otel == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318",
        "OTEL_SERVICE_NAME": "chat",
        "OTEL_RESOURCE_ATTRIBUTES": "k8s.namespace.name=ns",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    }
    deployment = builders.build_deployment(traced, traced.spec.image, "sum")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[-1] == {
        "name": "OTEL_EXPORTER_OTLP_HEADERS",
        "valueFrom": {"secretKeyRef": {"name": "otlp", "key": "h"}},
    }


def test_message_content_is_captured_only_when_the_tracing_spec_asks() -> None:
    def capture(tracing: dict[str, object]) -> object:
        data = builders.build_configmap(chatservice(tracing=tracing))["data"]
        return data.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")

    assert capture({"otlpEndpoint": "http://otel:4318", "captureMessageContent": True}) == "true"
    assert capture({"otlpEndpoint": "http://otel:4318"}) is None
    # Without an endpoint there are no spans to put content on.
    assert capture({"captureMessageContent": True}) is None


def test_rate_limits_take_redis_from_a_secret_and_their_failure_mode() -> None:
    limited = chatservice(
        rateLimits={"redisURLSecretRef": {"name": "redis", "key": "url"}, "failureMode": "closed"}
    )
    data = builders.build_configmap(limited)["data"]
    assert data["CHATSERVICE_RATE_LIMIT_FAILURE_MODE"] == "closed"
    assert "CHATSERVICE_REDIS_URL" not in data, "the URL may carry a password: Secret only"
    deployment = builders.build_deployment(limited, limited.spec.image, "sum")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env[-1] == {
        "name": "CHATSERVICE_REDIS_URL",
        "valueFrom": {"secretKeyRef": {"name": "redis", "key": "url"}},
    }
    plain = builders.build_deployment(chatservice(), "img", "sum")
    names = [e["name"] for e in plain["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert "CHATSERVICE_REDIS_URL" not in names


def test_logins_take_their_signing_key_from_a_secret() -> None:
    spec = chatservice().spec.model_dump(by_alias=True)
    auth = {**spec["auth"], "jwtSecretRef": {"name": "jwt", "key": "secret"}}
    signed = chatservice(auth=auth)
    env = builders.build_deployment(signed, "img", "sum")["spec"]["template"]["spec"]
    assert {
        "name": "CHATSERVICE_JWT_SECRET",
        "valueFrom": {"secretKeyRef": {"name": "jwt", "key": "secret"}},
    } in env["containers"][0]["env"]
    assert "CHATSERVICE_JWT_SECRET" not in builders.build_configmap(signed)["data"]
    plain = builders.build_deployment(chatservice(), "img", "sum")["spec"]["template"]["spec"]
    assert "CHATSERVICE_JWT_SECRET" not in [e["name"] for e in plain["containers"][0]["env"]]


def test_discovered_backends_carry_discovery_into_the_routes() -> None:
    discovered = chatservice(
        inference={
            "backends": [
                {"model": "llama", "baseURL": "http://vllm.models.svc:8000/v1", "discovery": "dns"},
                {
                    "model": "mixed",
                    "endpoints": [
                        {"baseURL": "http://tgi.models.svc:80/v1", "discovery": "dns", "weight": 2},
                        {"baseURL": "http://10.0.0.9:8000/v1"},
                    ],
                },
            ]
        }
    )
    routes = json.loads(builders.build_configmap(discovered)["data"]["CHATSERVICE_MODELS"])
    assert routes == [
        {
            "name": "llama",
            "backend": "openai",
            "base_url": "http://vllm.models.svc:8000/v1",
            "discovery": "dns",
            "upstream_model": "llama",
        },
        {
            "name": "mixed",
            "backend": "openai",
            "endpoints": [
                {"base_url": "http://tgi.models.svc:80/v1", "weight": 2.0, "discovery": "dns"},
                {"base_url": "http://10.0.0.9:8000/v1"},
            ],
            "upstream_model": "mixed",
        },
    ]


def test_config_checksum_follows_the_settings_only() -> None:
    base = builders.config_checksum(builders.build_configmap(chatservice()))
    assert base == builders.config_checksum(builders.build_configmap(chatservice(replicas=5)))
    assert base != builders.config_checksum(builders.build_configmap(chatservice(workers=4)))


def test_migration_hash_is_deterministic_and_keyed_on_image_and_database() -> None:
    digest = identity.migration_hash(chatservice())
    assert len(digest) == 10
    assert int(digest, 16) >= 0
    assert identity.migration_hash(chatservice(replicas=7, workers=8)) == digest
    assert identity.migration_hash(chatservice(image="reg.example/chat:1.1")) != digest
    other_db = {"urlSecretRef": {"name": "db2", "key": "url"}}
    assert identity.migration_hash(chatservice(database=other_db)) != digest
    assert identity.job_name(chatservice()) == f"chat-migrate-{digest}"


def test_migration_job() -> None:
    cs = chatservice()
    digest = identity.migration_hash(cs)
    job_labels = {
        **LABELS,
        "app.kubernetes.io/component": "migration",
        "chatservice.dev/migration-hash": digest,
    }
    assert builders.build_job(cs) == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **meta(f"chat-migrate-{digest}", job_labels),
            "annotations": {"chatservice.dev/image": "reg.example/chat:1.0"},
        },
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": 600,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": job_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": POD_SECURITY,
                    "containers": [
                        {
                            "name": "migrate",
                            "image": "reg.example/chat:1.0",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["chatservice", "migrate"],
                            "env": [
                                {"name": "CHATSERVICE_ENVIRONMENT", "value": "production"},
                                {"name": "CHATSERVICE_LOG_LEVEL", "value": "info"},
                                # The same routing table as the server's: the migrate command
                                # validates it too.
                                {"name": "CHATSERVICE_MODELS", "value": MODELS_JSON},
                                {"name": "CHATSERVICE_ALLOW_ECHO_IN_PRODUCTION", "value": "true"},
                                DB_ENV,
                                ADMIN_ENV,
                            ],
                            "resources": RESOURCES,
                            "securityContext": CONTAINER_SECURITY,
                            "volumeMounts": [{"name": "tmp", "mountPath": TMP}],
                        }
                    ],
                    "volumes": [{"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": "http"},
        "initialDelaySeconds": 0,
        "periodSeconds": period,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def _deployment(track: str, replicas: int, image: str) -> dict[str, Any]:
    """A serving Deployment as built for spec(): the stable and the canary differ in name,
    track label and replicas only."""
    labels = {**LABELS, "chatservice.dev/track": track}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(f"chat-{track}", labels),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 5,
            "progressDeadlineSeconds": 300,
            "selector": {"matchLabels": {**SELECTOR, "chatservice.dev/track": track}},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": "8000",
                        "prometheus.io/path": "/metrics",
                        "chatservice.dev/config-checksum": "sum",
                    },
                },
                "spec": {
                    "automountServiceAccountToken": False,
                    # graceful timeout 120 + preStop 5 + margin 10
                    "terminationGracePeriodSeconds": 135,
                    "securityContext": POD_SECURITY,
                    "containers": [
                        {
                            "name": "chatservice",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["chatservice", "run"],
                            "ports": [{"name": "http", "containerPort": 8000, "protocol": "TCP"}],
                            "envFrom": [{"configMapRef": {"name": "chat-config"}}],
                            "env": [
                                DB_ENV,
                                ADMIN_ENV,
                                {
                                    "name": "CHATSERVICE_UPSTREAM_KEY_0",
                                    "valueFrom": {"secretKeyRef": {"name": "vllm", "key": "token"}},
                                },
                            ],
                            "livenessProbe": _probe("/api/v1/health/live", 10, 3),
                            "readinessProbe": _probe("/api/v1/health/ready", 5, 3),
                            "startupProbe": _probe("/api/v1/health/live", 2, 30),
                            "resources": RESOURCES,
                            "securityContext": CONTAINER_SECURITY,
                            "volumeMounts": [
                                {"name": "tmp", "mountPath": TMP},
                                {"name": "metrics", "mountPath": "/var/run/chatservice/metrics"},
                            ],
                            "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                        }
                    ],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "metrics", "emptyDir": {}},
                    ],
                },
            },
        },
    }


def test_deployment_runs_the_given_image_under_the_restricted_profile() -> None:
    cs = chatservice()
    assert builders.build_deployment(cs, "reg.example/chat:0.9", "sum") == _deployment(
        "stable", 2, "reg.example/chat:0.9"
    )


def test_canary_deployment_has_its_own_selector_and_replicas() -> None:
    cs = chatservice()
    built = builders.build_deployment(cs, "reg.example/chat:1.1", "sum", identity.Track.CANARY, 1)
    assert built == _deployment("canary", 1, "reg.example/chat:1.1")
    # The Service selects both tracks; the two Deployments' selectors never overlap.
    service = builders.build_service(cs)["spec"]["selector"]
    stable = builders.build_deployment(cs, "reg.example/chat:0.9", "sum")
    for deployment in (built, stable):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert service.items() <= pod_labels.items()
    assert built["spec"]["selector"]["matchLabels"] != stable["spec"]["selector"]["matchLabels"]


def test_deployment_leaves_replicas_to_the_autoscaler_and_skips_a_zero_prestop() -> None:
    cs = chatservice(autoscaling={"enabled": True}, rollout={"preStopSleepSeconds": 0})
    deployment = builders.build_deployment(cs, "img", "sum")
    assert "replicas" not in deployment["spec"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "lifecycle" not in container
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 130


def test_probe_timings_come_from_the_spec() -> None:
    cs = chatservice(probes={"readiness": {"path": "/api/v1/health/ready", "periodSeconds": 1}})
    container = builders.build_deployment(cs, "img", "sum")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["readinessProbe"] == _probe("/api/v1/health/ready", 1, 3)


def test_service() -> None:
    assert builders.build_service(chatservice()) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(),
        "spec": {
            "type": "ClusterIP",
            "selector": SELECTOR,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def test_hpa() -> None:
    cs = chatservice(autoscaling={"enabled": True, "minReplicas": 3, "maxReplicas": 9})
    assert builders.build_hpa(cs) == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "chat-stable",
            },
            "minReplicas": 3,
            "maxReplicas": 9,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                }
            ],
        },
    }


def test_pdb() -> None:
    assert builders.build_pdb(chatservice()) == {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}},
    }


def test_service_monitor() -> None:
    assert builders.build_service_monitor(chatservice()) == {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta(),
        "spec": {
            "selector": {"matchLabels": SELECTOR},
            "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
        },
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "minReplicas must be <="),
        ({"inference": {"backends": [{"model": "x"}]}}, "needs baseURL"),
        (
            {
                "inference": {
                    "backends": [
                        {
                            "model": "x",
                            "endpoints": [{"baseURL": "http://a/v1"}],
                            "discovery": "dns",
                        }
                    ]
                }
            },
            "discovery applies to baseURL",
        ),
        ({"inference": {"backends": []}}, "at least 1 item"),
        ({"replicas": -1}, "greater than or equal to 0"),
        ({"rollout": {"canary": {"replicas": 0}}}, "at least 1"),
        ({"rollout": {"canary": {"replicas": "0%"}}}, "a percentage"),
        ({"rollout": {"canary": {"duration": "10 minutes"}}}, "not a duration"),
        ({"rollout": {"canary": {"duration": "0s"}}}, "at least 1s"),
        ({"rollout": {"canary": {"prometheusURL": "prom:9090"}}}, "should match pattern"),
    ],
)
def test_spec_model_rejects_what_the_crd_rejects(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        chatservice(**changes)


@pytest.mark.parametrize(
    ("replicas", "stable", "expected"),
    [(1, 10, 1), (3, 2, 3), ("10%", 10, 1), ("10%", 25, 3), ("1%", 2, 1), ("100%", 4, 4)],
)
def test_canary_replicas_are_a_count_or_a_percentage_rounded_up(
    replicas: int | str, stable: int, expected: int
) -> None:
    canary = chatservice(rollout={"canary": {"replicas": replicas}}).spec.rollout.canary
    assert canary.replica_count(stable) == expected


def test_an_event_names_its_chatservice_and_is_cut_to_the_api_servers_length() -> None:
    body = {"metadata": {"name": "chat", "namespace": "ns", "uid": "u-1"}}
    moment = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    event = events.event_for(body, "Warning", "CanaryFailed", "x" * 5000, moment)
    assert event["involvedObject"] == {
        "apiVersion": "chatservice.dev/v1alpha1",
        "kind": "ChatService",
        "name": "chat",
        "namespace": "ns",
        "uid": "u-1",
    }
    assert event["metadata"] == {"namespace": "ns", "generateName": "chat."}
    assert (event["type"], event["reason"]) == ("Warning", "CanaryFailed")
    assert len(event["message"]) == 1024
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2026-12-03T12:00:00Z"
