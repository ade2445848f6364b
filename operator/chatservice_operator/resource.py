"""The ChatService custom resource as frozen Pydantic models, parsed at the top of every handler.

Defaults here mirror the CRD's so that a resource read from a cluster that did not apply them
(an old object, or a test server without schema defaulting) still parses to the same spec.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )


class SecretKeyRef(_Model):
    name: str = Field(min_length=1)
    key: str = Field(min_length=1)


class Database(_Model):
    url_secret_ref: SecretKeyRef


class Auth(_Model):
    admin_key_secret_ref: SecretKeyRef
    # The key that signs login tokens (CHATSERVICE_JWT_SECRET); without it logins are off
    # (503 login_disabled) and API keys still work.
    jwt_secret_ref: SecretKeyRef | None = None


# `dns`: the URL's host is a headless Service whose A/AAAA records are the servers; the
# service resolves it (CHATSERVICE_MODELS' `discovery`).
Discovery = Literal["dns"]


class BackendEndpoint(_Model):
    """One server of a backend with several (they share the backend's key), or with
    `discovery` the servers its host name resolves to."""

    base_url: str = Field(alias="baseURL")
    weight: float = Field(default=1.0, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)
    discovery: Discovery | None = None


class Backend(_Model):
    model: str = Field(min_length=1)
    backend: Literal["openai", "echo"] = "openai"
    base_url: str | None = Field(default=None, alias="baseURL")
    discovery: Discovery | None = None  # of baseURL
    endpoints: tuple[BackendEndpoint, ...] = ()
    fallbacks: tuple[str, ...] = ()
    upstream_model: str | None = None
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] | None = None
    # USD per million tokens; the service's default (0) when not set.
    input_price_per_million_tokens: float | None = Field(default=None, ge=0)
    output_price_per_million_tokens: float | None = Field(default=None, ge=0)
    api_key_secret_ref: SecretKeyRef | None = None

    @model_validator(mode="after")
    def _openai_needs_base_url(self) -> Backend:
        if self.backend == "openai" and not self.base_url and not self.endpoints:
            raise ValueError(
                f"backend {self.model!r}: an openai backend needs baseURL or endpoints"
            )
        if self.base_url and self.endpoints:
            raise ValueError(f"backend {self.model!r}: give baseURL or endpoints, not both")
        if self.discovery and not self.base_url:
            raise ValueError(
                f"backend {self.model!r}: discovery applies to baseURL; with endpoints, "
                "set it on each endpoint"
            )
        return self


class Inference(_Model):
    backends: tuple[Backend, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_models(self) -> Inference:
        names = [backend.model for backend in self.backends]
        if len(names) != len(set(names)):
            raise ValueError("inference.backends: model names must be unique")
        openai = {b.model for b in self.backends if b.backend == "openai"}
        for backend in self.backends:
            unknown = [f for f in backend.fallbacks if f not in openai or f == backend.model]
            if unknown:
                raise ValueError(
                    f"backend {backend.model!r}: fallbacks {unknown!r} are not other openai "
                    "backends of this ChatService"
                )
        return self


class Probe(_Model):
    path: str
    initial_delay_seconds: int = Field(default=0, ge=0)
    period_seconds: int = Field(default=10, ge=1)
    timeout_seconds: int = Field(default=2, ge=1)
    failure_threshold: int = Field(default=3, ge=1)


class Probes(_Model):
    liveness: Probe = Probe(path="/api/v1/health/live")
    readiness: Probe = Probe(path="/api/v1/health/ready", period_seconds=5)
    startup: Probe = Probe(path="/api/v1/health/live", period_seconds=2, failure_threshold=30)


class Migrations(_Model):
    enabled: bool = True
    timeout_seconds: int = Field(default=600, ge=1)
    backoff_limit: int = Field(default=2, ge=0, le=10)
    ttl_seconds_after_finished: int = Field(default=86400, ge=0)


_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_PERCENT = re.compile(r"^(100|[1-9][0-9]?)%$")


def duration_seconds(text: str) -> int:
    """`1h30m`, `10m`, `90s`: the subset of Go's durations the CRD's pattern admits."""
    match = _DURATION.match(text)
    if not text or match is None:
        raise ValueError(f"{text!r} is not a duration like 90s, 10m or 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


class ErrorRatioThreshold(_Model):
    # Absolute: 0.01 lets the canary fail one request in a hundred more than the stable pods.
    max_increase: float = Field(default=0.01, ge=0, le=1)


class LatencyThreshold(_Model):
    max_ratio: float = Field(ge=1)
    # Differences below this never fail: histogram buckets cannot resolve them.
    slack_seconds: float = Field(ge=0)


def _ttft_threshold() -> LatencyThreshold:
    return LatencyThreshold(max_ratio=1.5, slack_seconds=0.05)


def _added_latency_threshold() -> LatencyThreshold:
    return LatencyThreshold(max_ratio=2.0, slack_seconds=0.001)


class StreamCompletionThreshold(_Model):
    max_decrease: float = Field(default=0.01, ge=0, le=1)


class CanaryThresholds(_Model):
    error_ratio: ErrorRatioThreshold = ErrorRatioThreshold()
    time_to_first_token_p95: LatencyThreshold = Field(
        default_factory=_ttft_threshold, alias="timeToFirstTokenP95"
    )
    added_latency_p95: LatencyThreshold = Field(
        default_factory=_added_latency_threshold, alias="addedLatencyP95"
    )
    stream_completion_ratio: StreamCompletionThreshold = StreamCompletionThreshold()


class Canary(_Model):
    enabled: bool = False
    # A count, or a percentage of spec.replicas (rounded up, at least one pod).
    replicas: int | str = 1
    duration: str = "10m"
    min_requests: int = Field(default=100, ge=0)
    prometheus_url: str | None = Field(default=None, alias="prometheusURL", pattern=r"^https?://")
    thresholds: CanaryThresholds = CanaryThresholds()

    @model_validator(mode="after")
    def _valid_replicas_and_duration(self) -> Canary:
        if isinstance(self.replicas, int) and self.replicas < 1:
            raise ValueError("canary.replicas must be at least 1")
        if isinstance(self.replicas, str) and not _PERCENT.match(self.replicas):
            raise ValueError("canary.replicas must be a count or a percentage like 10%")
        if self.duration_seconds < 1:
            raise ValueError("canary.duration must be at least 1s")
        return self

    @property
    def duration_seconds(self) -> int:
        return duration_seconds(self.duration)

    def replica_count(self, stable_replicas: int) -> int:
        if isinstance(self.replicas, int):
            return self.replicas
        percent = int(self.replicas.rstrip("%"))
        return max(1, -(-stable_replicas * percent // 100))


class Rollout(_Model):
    progress_deadline_seconds: int = Field(default=300, ge=10)
    auto_rollback: bool = True
    pre_stop_sleep_seconds: int = Field(default=5, ge=0, le=60)
    canary: Canary = Canary()


class Autoscaling(_Model):
    enabled: bool = False
    min_replicas: int = Field(default=2, ge=1)
    max_replicas: int = Field(default=10, ge=1)
    target_cpu_utilization_percentage: int = Field(
        default=70, ge=1, le=100, alias="targetCPUUtilizationPercentage"
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("autoscaling: minReplicas must be <= maxReplicas")
        return self


class PodDisruptionBudget(_Model):
    enabled: bool = True
    max_unavailable: int = Field(default=1, ge=1)


class Monitoring(_Model):
    service_monitor: bool = True
    interval: str = "30s"


class Tracing(_Model):
    otlp_endpoint: str | None = None
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    headers_secret_ref: SecretKeyRef | None = None
    capture_message_content: bool = False


class RateLimits(_Model):
    # A Secret key with a redis:// or rediss:// URL (it may carry a password): limits exact
    # across replicas. Without it each pod's workers share a file, exact per pod only.
    redis_url_secret_ref: SecretKeyRef | None = Field(default=None, alias="redisURLSecretRef")
    # What a request gets while Redis cannot be asked: let through, or 503.
    failure_mode: Literal["open", "closed"] = "open"


Quantities = dict[str, int | str]


def _default_requests() -> Quantities:
    return {"cpu": "250m", "memory": "256Mi"}


def _default_limits() -> Quantities:
    return {"memory": "512Mi"}


class Resources(_Model):
    requests: Quantities = Field(default_factory=_default_requests)
    limits: Quantities = Field(default_factory=_default_limits)


class ChatServiceSpec(_Model):
    image: str = Field(min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    replicas: int = Field(default=2, ge=0)
    paused: bool = False
    workers: int = Field(default=2, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    graceful_timeout_seconds: int = Field(default=120, ge=1, le=3600)
    database: Database
    auth: Auth
    inference: Inference
    resources: Resources = Resources()
    probes: Probes = Probes()
    migrations: Migrations = Migrations()
    rollout: Rollout = Rollout()
    autoscaling: Autoscaling = Autoscaling()
    pod_disruption_budget: PodDisruptionBudget = PodDisruptionBudget()
    monitoring: Monitoring = Monitoring()
    tracing: Tracing = Tracing()
    rate_limits: RateLimits = RateLimits()


class ChatService(BaseModel):
    """The identity the builders need (for names and ownerReferences) plus the parsed spec."""

    model_config = ConfigDict(frozen=True)

    name: str
    namespace: str
    uid: str
    generation: int
    spec: ChatServiceSpec


class Phase(StrEnum):
    """`status.phase`, as `kubectl get chatservices` shows it."""

    MIGRATING = "Migrating"
    CANARY = "Canary"
    ROLLING_OUT = "RollingOut"
    READY = "Ready"
    FAILED = "Failed"
    PAUSED = "Paused"


class MigrationResult(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class CanaryVerdict(StrEnum):
    PENDING = "Pending"
    PASSED = "Passed"
    FAILED = "Failed"


class _StatusModel(BaseModel):
    # Status is written by this operator only; tolerate fields an older version left behind.
    model_config = ConfigDict(
        frozen=True, extra="ignore", alias_generator=to_camel, populate_by_name=True
    )


class Condition(_StatusModel):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int = 0


class MigrationStatus(_StatusModel):
    job: str | None = None
    hash: str | None = None
    image: str | None = None
    result: MigrationResult | None = None
    finished_at: str | None = None
    failed_generation: int | None = None


class RolloutStatus(_StatusModel):
    rolled_back_image: str | None = None
    rolled_back_generation: int | None = None


class PodSample(_StatusModel):
    """One pod's service counters, summed over models: what the canary's deltas start from."""

    pod: str
    track: str
    requests: float = 0
    errors: float = 0
    streams: float = 0
    completed_streams: float = 0
    # Cumulative histogram buckets by upper bound (`le`, as the exposition writes it).
    time_to_first_token: dict[str, float] = {}
    added_latency: dict[str, float] = {}


class CanaryFigures(_StatusModel):
    """What one track did during the canary window; None: nothing to measure it from."""

    requests: int = 0
    error_ratio: float | None = None
    time_to_first_token_p95: float | None = Field(default=None, alias="timeToFirstTokenP95")
    added_latency_p95: float | None = Field(default=None, alias="addedLatencyP95")
    stream_completion_ratio: float | None = None


class CanaryStatus(_StatusModel):
    image: str | None = None
    generation: int | None = None
    # When the canary pods were all ready and the window opened; None: not yet.
    started: str | None = None
    requests_seen: int = 0
    canary: CanaryFigures | None = None
    stable: CanaryFigures | None = None
    verdict: CanaryVerdict | None = None
    decided_at: str | None = None
    message: str | None = None
    # Every pod's counters at the last reading (the first: when the window opened), and what each
    # pod did in the window so far: a restarted operator measures the same window, and a pod
    # that restarts or goes keeps what it did counted.
    readings: tuple[PodSample, ...] = ()
    window: tuple[PodSample, ...] = ()


class ChatServiceStatus(_StatusModel):
    observed_generation: int = 0
    phase: Phase | None = None
    current_image: str | None = None
    target_image: str | None = None
    migration: MigrationStatus = MigrationStatus()
    rollout: RolloutStatus = RolloutStatus()
    canary: CanaryStatus = CanaryStatus()
    replicas: int = 0
    ready_replicas: int = 0
    conditions: tuple[Condition, ...] = ()
