"""Pure functions from a parsed ChatService to the child objects it owns, as plain dicts.

Nothing here talks to Kubernetes, so each builder is tested by whole-dict equality.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from chatservice_operator.identity import (
    CONFIG_CHECKSUM_ANNOTATION,
    IMAGE_ANNOTATION,
    MIGRATION_HASH_LABEL,
    TRACK_LABEL,
    Track,
    configmap_name,
    deployment_name,
    job_name,
    labels,
    migration_hash,
    owner_reference,
    selector_labels,
    track_selector_labels,
)
from chatservice_operator.resource import ChatService, Probe

Obj = dict[str, Any]

HTTP_PORT = 8000
METRICS_DIR = "/var/run/chatservice/metrics"
# The rate limits' store without Redis: a file every worker of the pod shares, on the pod's
# writable /tmp (the root filesystem is read-only).
RATE_LIMIT_FILE = "/tmp/rate-limits.sqlite"  # noqa: S108
# A UID no base image uses, so that runAsNonRoot holds without trusting the image's USER line.
RUN_AS_ID = 10001
# Time for the last streamed response to finish after gunicorn's graceful timeout starts.
GRACE_MARGIN_SECONDS = 10


def _metadata(cs: ChatService, name: str, component: str) -> Obj:
    return {
        "name": name,
        "namespace": cs.namespace,
        "labels": labels(cs, component),
        "ownerReferences": [owner_reference(cs)],
    }


def _api_key_env(index: int) -> str:
    return f"CHATSERVICE_UPSTREAM_KEY_{index}"


def _models_json(cs: ChatService) -> str:
    routes: list[dict[str, object]] = []
    for index, backend in enumerate(cs.spec.inference.backends):
        route: dict[str, object] = {"name": backend.model, "backend": backend.backend}
        if backend.base_url is not None:
            route["base_url"] = backend.base_url
        if backend.discovery is not None:
            route["discovery"] = backend.discovery
        if backend.endpoints:
            route["endpoints"] = [
                e.model_dump(exclude_none=True, exclude_defaults=True) for e in backend.endpoints
            ]
        if backend.fallbacks:
            route["fallbacks"] = list(backend.fallbacks)
        route["upstream_model"] = backend.upstream_model or backend.model
        if backend.max_tokens_field is not None:
            route["max_tokens_field"] = backend.max_tokens_field
        for price in ("input_price_per_million_tokens", "output_price_per_million_tokens"):
            value = getattr(backend, price)
            if value is not None:
                route[price] = value
        if backend.api_key_secret_ref is not None:
            route["api_key_env"] = _api_key_env(index)
        routes.append(route)
    return json.dumps(routes, separators=(",", ":"))


def _routing_env(cs: ChatService) -> dict[str, str]:
    """The routing table, which every `chatservice` command validates at start (the migration
    Job's too: without it the service's default echo route is refused in production)."""
    env = {"CHATSERVICE_MODELS": _models_json(cs)}
    if any(backend.backend == "echo" for backend in cs.spec.inference.backends):
        # Production refuses the echo backend unless allowed; a resource that names it
        # asked for it.
        env["CHATSERVICE_ALLOW_ECHO_IN_PRODUCTION"] = "true"
    return env


def _tracing_env(cs: ChatService) -> dict[str, str]:
    """The standard OTEL_* variables the service reads; none without an endpoint (tracing off)."""
    tracing = cs.spec.tracing
    if tracing.otlp_endpoint is None:
        return {}
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": tracing.otlp_endpoint,
        "OTEL_SERVICE_NAME": cs.name,
        "OTEL_RESOURCE_ATTRIBUTES": f"k8s.namespace.name={cs.namespace}",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(tracing.sample_ratio),
    }
    if tracing.capture_message_content:
        env["OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"] = "true"
    return env


def build_configmap(cs: ChatService) -> Obj:
    spec = cs.spec
    data = {
        "CHATSERVICE_ENVIRONMENT": "production",
        "CHATSERVICE_WORKERS": str(spec.workers),
        **_routing_env(cs),
        "CHATSERVICE_GRACEFUL_TIMEOUT": str(spec.graceful_timeout_seconds),
        # No stream may outlast the shutdown grace, so a SIGTERM never cuts one short.
        "CHATSERVICE_UPSTREAM_TOTAL_TIMEOUT": str(spec.graceful_timeout_seconds),
        "CHATSERVICE_LOG_LEVEL": spec.log_level,
        "PROMETHEUS_MULTIPROC_DIR": METRICS_DIR,
        "CHATSERVICE_RATE_LIMIT_FILE": RATE_LIMIT_FILE,
        "CHATSERVICE_RATE_LIMIT_FAILURE_MODE": spec.rate_limits.failure_mode,
        **_tracing_env(cs),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(cs, configmap_name(cs), "server"),
        "data": data,
    }


def config_checksum(configmap: Obj) -> str:
    """Put on the pod template so that a settings change rolls the pods (envFrom is read once)."""
    return hashlib.sha256(json.dumps(configmap["data"], sort_keys=True).encode()).hexdigest()


def _secret_env(name: str, ref_name: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref_name, "key": key}}}


def _core_secret_env(cs: ChatService) -> list[Obj]:
    db = cs.spec.database.url_secret_ref
    admin = cs.spec.auth.admin_key_secret_ref
    env = [
        _secret_env("CHATSERVICE_DATABASE_URL", db.name, db.key),
        _secret_env("CHATSERVICE_ADMIN_API_KEY", admin.name, admin.key),
    ]
    if (jwt := cs.spec.auth.jwt_secret_ref) is not None:
        env.append(_secret_env("CHATSERVICE_JWT_SECRET", jwt.name, jwt.key))
    return env


def _upstream_secret_env(cs: ChatService) -> list[Obj]:
    return [
        _secret_env(_api_key_env(index), ref.name, ref.key)
        for index, backend in enumerate(cs.spec.inference.backends)
        if (ref := backend.api_key_secret_ref) is not None
    ]


def _tracing_secret_env(cs: ChatService) -> list[Obj]:
    ref = cs.spec.tracing.headers_secret_ref
    if ref is None or cs.spec.tracing.otlp_endpoint is None:
        return []
    return [_secret_env("OTEL_EXPORTER_OTLP_HEADERS", ref.name, ref.key)]


def _redis_secret_env(cs: ChatService) -> list[Obj]:
    ref = cs.spec.rate_limits.redis_url_secret_ref
    return [] if ref is None else [_secret_env("CHATSERVICE_REDIS_URL", ref.name, ref.key)]


def _pod_security_context() -> Obj:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_ID,
        "runAsGroup": RUN_AS_ID,
        "fsGroup": RUN_AS_ID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _container_security_context() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _resources(cs: ChatService) -> Obj:
    return {"requests": dict(cs.spec.resources.requests), "limits": dict(cs.spec.resources.limits)}


def _tmp_volume() -> tuple[Obj, Obj]:
    return {"name": "tmp", "emptyDir": {}}, {"name": "tmp", "mountPath": "/tmp"}  # noqa: S108


def build_job(cs: ChatService) -> Obj:
    spec = cs.spec
    job_labels = {**labels(cs, "migration"), MIGRATION_HASH_LABEL: migration_hash(cs)}
    tmp_volume, tmp_mount = _tmp_volume()
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            **_metadata(cs, job_name(cs), "migration"),
            "labels": job_labels,
            "annotations": {IMAGE_ANNOTATION: spec.image},
        },
        "spec": {
            "backoffLimit": spec.migrations.backoff_limit,
            "activeDeadlineSeconds": spec.migrations.timeout_seconds,
            "ttlSecondsAfterFinished": spec.migrations.ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": job_labels},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "securityContext": _pod_security_context(),
                    "containers": [
                        {
                            "name": "migrate",
                            "image": spec.image,
                            "imagePullPolicy": spec.image_pull_policy,
                            "command": ["chatservice", "migrate"],
                            "env": [
                                {"name": "CHATSERVICE_ENVIRONMENT", "value": "production"},
                                {"name": "CHATSERVICE_LOG_LEVEL", "value": spec.log_level},
                                *(
                                    {"name": name, "value": value}
                                    for name, value in _routing_env(cs).items()
                                ),
                                *_core_secret_env(cs),
                            ],
                            "resources": _resources(cs),
                            "securityContext": _container_security_context(),
                            "volumeMounts": [tmp_mount],
                        }
                    ],
                    "volumes": [tmp_volume],
                },
            },
        },
    }


def _probe(probe: Probe) -> Obj:
    return {
        "httpGet": {"path": probe.path, "port": "http"},
        "initialDelaySeconds": probe.initial_delay_seconds,
        "periodSeconds": probe.period_seconds,
        "timeoutSeconds": probe.timeout_seconds,
        "failureThreshold": probe.failure_threshold,
    }


def build_deployment(
    cs: ChatService,
    image: str,
    checksum: str,
    track: Track = Track.STABLE,
    replicas: int | None = None,
) -> Obj:
    """A serving Deployment at `image` (the state machine picks it, not always spec.image): the
    stable one, or the canary with `replicas` pods. Both are behind the one Service."""
    spec = cs.spec
    pod_labels = {**labels(cs, "server"), TRACK_LABEL: track}
    tmp_volume, tmp_mount = _tmp_volume()
    container: Obj = {
        "name": "chatservice",
        "image": image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["chatservice", "run"],
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "envFrom": [{"configMapRef": {"name": configmap_name(cs)}}],
        "env": [
            *_core_secret_env(cs),
            *_upstream_secret_env(cs),
            *_tracing_secret_env(cs),
            *_redis_secret_env(cs),
        ],
        "livenessProbe": _probe(spec.probes.liveness),
        "readinessProbe": _probe(spec.probes.readiness),
        "startupProbe": _probe(spec.probes.startup),
        "resources": _resources(cs),
        "securityContext": _container_security_context(),
        "volumeMounts": [tmp_mount, {"name": "metrics", "mountPath": METRICS_DIR}],
    }
    pre_stop = spec.rollout.pre_stop_sleep_seconds
    if pre_stop:
        # Keep serving while the endpoint removal propagates to every kube-proxy and ingress.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": pre_stop}}}
    deployment_spec: Obj = {
        "revisionHistoryLimit": 5,
        "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
        "selector": {"matchLabels": track_selector_labels(cs, track)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "template": {
            "metadata": {
                "labels": pod_labels,
                "annotations": {
                    "prometheus.io/scrape": "true",
                    "prometheus.io/port": str(HTTP_PORT),
                    "prometheus.io/path": "/metrics",
                    CONFIG_CHECKSUM_ANNOTATION: checksum,
                },
            },
            "spec": {
                "automountServiceAccountToken": False,
                "terminationGracePeriodSeconds": (
                    spec.graceful_timeout_seconds + pre_stop + GRACE_MARGIN_SECONDS
                ),
                "securityContext": _pod_security_context(),
                "containers": [container],
                "volumes": [tmp_volume, {"name": "metrics", "emptyDir": {}}],
            },
        },
    }
    if replicas is None and not spec.autoscaling.enabled:
        replicas = spec.replicas
    if replicas is not None:
        # With an HPA, the stable replicas belong to it: leaving the field out keeps its value.
        deployment_spec = {"replicas": replicas, **deployment_spec}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            **_metadata(cs, deployment_name(cs, track), "server"),
            "labels": dict(pod_labels),
        },
        "spec": deployment_spec,
    }


def build_service(cs: ChatService) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(cs, cs.name, "server"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(cs, "server"),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def build_hpa(cs: ChatService) -> Obj:
    autoscaling = cs.spec.autoscaling
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(cs, cs.name, "server"),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment_name(cs, Track.STABLE),
            },
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": autoscaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def build_pdb(cs: ChatService) -> Obj:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(cs, cs.name, "server"),
        "spec": {
            "maxUnavailable": cs.spec.pod_disruption_budget.max_unavailable,
            "selector": {"matchLabels": selector_labels(cs, "server")},
        },
    }


def build_service_monitor(cs: ChatService) -> Obj:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _metadata(cs, cs.name, "server"),
        "spec": {
            "selector": {"matchLabels": selector_labels(cs, "server")},
            "endpoints": [
                {"port": "http", "path": "/metrics", "interval": cs.spec.monitoring.interval}
            ],
        },
    }
