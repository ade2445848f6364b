"""Settings: one pydantic-settings class read from `CHATSERVICE_*` environment variables."""

from __future__ import annotations

import ipaddress
import json
import math
import os
from collections import Counter
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The development admin key `make run` prints. It is public (it is in this file), so it is
# refused outside development, like any key that is too short to be a real secret.
DEVELOPMENT_ADMIN_KEY = "sk-dev-chatservice-local-development-key"
MIN_SECRET_LENGTH = 32
# A real secret is random: its characters' frequencies carry entropy (32 random hex digits
# estimate above 90 bits, `aaaa…` zero) and it repeats no pattern (`password` four times does).
MIN_SECRET_ENTROPY_BITS = 90
MIN_DISTINCT_TRIGRAMS = 0.9
# Routers carry the whole prefix, so a route's path is the template metrics and logs show.
API_PREFIX = "/api/v1"
CHAT_COMPLETIONS_PATH = f"{API_PREFIX}/chat/completions"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


# `dns`: the base URL's host is a headless Service's name, whose A and AAAA records are
# the servers (inference/dns_discovery.py).
Discovery = Literal["dns"]


class UpstreamEndpoint(BaseModel):
    """One server of a route, or with `discovery` the servers a DNS name resolves to: requests
    are balanced across a route's endpoints."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str = Field(min_length=1, description="Upstream base URL, e.g. .../v1")
    discovery: Discovery | None = Field(
        default=None,
        description="`dns`: every address the base URL's host resolves to (A and AAAA, "
        "refreshed every `dns_refresh_interval`) is an endpoint of its own.",
    )
    weight: float = Field(default=1.0, gt=0, description="Share of the traffic, relative.")
    api_key_env: str | None = Field(
        default=None,
        description="Environment variable holding this endpoint's key (else the route's).",
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="Requests in flight to this endpoint at most."
    )

    @model_validator(mode="after")
    def _discovery_needs_a_name(self) -> Self:
        if self.discovery is not None and not _is_host_name(urlsplit(self.base_url).hostname):
            raise ValueError(
                f"endpoint {self.base_url!r}: discovery needs a host name to resolve, not an "
                "address"
            )
        return self


def _is_host_name(host: str | None) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


class ModelRoute(BaseModel):
    """One public model name and where its requests go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Public model name clients send as `model`.")
    backend: Literal["echo", "openai"] = "echo"
    base_url: str | None = Field(default=None, description="Upstream base URL, e.g. .../v1")
    discovery: Discovery | None = Field(
        default=None, description="`dns`: base_url's host names the servers (as an endpoint's)."
    )
    endpoints: tuple[UpstreamEndpoint, ...] = Field(
        default=(), description="Several servers of this model (instead of base_url)."
    )
    fallbacks: tuple[str, ...] = Field(
        default=(),
        description="Other public model names tried in order when no endpoint of this one "
        "could start the answer.",
    )
    upstream_model: str | None = Field(default=None, description="Model name sent upstream.")
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the upstream API key."
    )
    owned_by: str = "chatservice"
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = Field(
        default="max_tokens",
        description="The name under which this upstream honours the output-token limit: a "
        "client's `max_tokens` or `max_completion_tokens` is sent as this field only.",
    )
    tokenizer: Path | None = Field(
        default=None,
        description="A local Hugging Face `tokenizer.json` that counts tokens when the upstream "
        "reports no usage (otherwise they are estimated).",
    )
    # Prices give each usage ledger row its cost (and the usage API its spend).
    input_price_per_million_tokens: float = Field(
        default=0.0, ge=0, description="USD per million prompt tokens."
    )
    output_price_per_million_tokens: float = Field(
        default=0.0, ge=0, description="USD per million completion tokens."
    )

    @model_validator(mode="after")
    def _openai_needs_base_url(self) -> Self:
        if self.backend == "openai" and not self.base_url and not self.endpoints:
            raise ValueError(f"model {self.name!r}: the openai backend needs base_url or endpoints")
        if self.base_url and self.endpoints:
            raise ValueError(f"model {self.name!r}: give base_url or endpoints, not both")
        if self.discovery and not self.base_url:
            raise ValueError(
                f"model {self.name!r}: discovery applies to base_url; with "
                "endpoints, set it on each endpoint"
            )
        if self.discovery and not _is_host_name(urlsplit(self.base_url or "").hostname):
            raise ValueError(f"model {self.name!r}: discovery needs a host name, not an address")
        return self

    def upstream_endpoints(self) -> tuple[UpstreamEndpoint, ...]:
        """The endpoints; a route with one `base_url` (the operator's shape) is one endpoint."""
        if self.endpoints:
            return self.endpoints
        if not self.base_url:
            return ()
        return (UpstreamEndpoint(base_url=self.base_url, discovery=self.discovery),)

    @model_validator(mode="after")
    def _tokenizer_is_a_file(self) -> Self:
        # Only that it exists here (settings are read in several processes); each worker
        # loads it at start-up, and `chatservice run` loads it once before starting them.
        if self.tokenizer is not None and not self.tokenizer.is_file():
            raise ValueError(
                f"model {self.name!r}: tokenizer file {str(self.tokenizer)!r} not found"
            )
        return self

    def upstream_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value().strip()
        if self.api_key_env:
            return secret_from_env(self.api_key_env)
        return None


def secret_from_env(name: str) -> str | None:
    """The variable's value without surrounding whitespace: a Secret made from a file often
    ends with its newline, which no key has and which no HTTP header may carry."""
    value = os.environ.get(name)
    return None if value is None else value.strip()


DEFAULT_MODELS = (ModelRoute(name="echo", backend="echo"),)


class Settings(BaseSettings):
    # hide_input_in_errors: a refused configuration must not print the secrets it was given.
    # populate_by_name: a setting read from a standard variable (its alias) is still given by
    # its name in code.
    model_config = SettingsConfigDict(
        env_prefix="CHATSERVICE_",
        extra="ignore",
        frozen=True,
        hide_input_in_errors=True,
        populate_by_name=True,
    )

    environment: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"
    # Lines of one kind (logger, message, exception type) a worker writes per minute at
    # warning and above; the rest are counted and dropped. 0: no limit.
    log_repeats_per_minute: int = Field(default=10, ge=0)

    # Database. The embedded default needs no setup; production uses postgresql+asyncpg.
    database_url: str = "sqlite+aiosqlite:///./var/chatservice.db"
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout: float = Field(default=10.0, gt=0)
    db_pool_recycle: int = Field(default=1800, ge=-1)
    db_pool_pre_ping: bool = True
    db_connect_timeout: float = Field(default=5.0, gt=0)

    # Auth.
    admin_api_key: SecretStr = SecretStr(DEVELOPMENT_ADMIN_KEY)
    key_cache_ttl: float = Field(default=30.0, ge=0, description="Seconds a key lookup is cached")
    key_cache_size: int = Field(default=10_000, ge=1)
    # Unknown keys are remembered apart from known ones, so a flood of random keys cannot
    # push the valid keys out of the cache.
    negative_key_cache_ttl: float = Field(default=5.0, ge=0)
    negative_key_cache_size: int = Field(default=10_000, ge=1)
    # Failed authentications allowed per client address (a burst, refilled per minute).
    auth_failures_per_minute: int = Field(default=30, ge=1)
    auth_failure_clients: int = Field(default=10_000, ge=1)
    # Logins (people; programs use keys). Without a JWT secret, `POST /auth/token` answers 503.
    jwt_secret: SecretStr | None = Field(default=None, min_length=MIN_SECRET_LENGTH)
    jwt_lifetime: float = Field(default=900.0, gt=0, description="Seconds a login token lives")
    jwt_leeway: float = Field(default=30.0, ge=0, description="Clock skew tolerated, seconds")
    # Failed logins allowed per email (a burst, refilled per minute); per client address the
    # limit is `auth_failures_per_minute`, shared with wrong API keys.
    login_failures_per_minute: int = Field(default=10, ge=1)
    # Seconds a rotated key's old secret keeps working, unless the rotation asks otherwise.
    key_rotation_grace: float = Field(default=86_400.0, ge=0)
    # Each worker checks the invalidation log this often: the bound on how long a revoked,
    # rotated or deactivated key may still be served from another worker's cache.
    key_invalidation_poll_interval: float = Field(default=1.0, gt=0, le=60)
    # Database work on the request path is bounded: each statement by the server
    # (PostgreSQL's statement_timeout), the whole call (pool wait, connect, statements) by
    # a deadline here. Past it the client gets 503 with `Retry-After`.
    db_statement_timeout: float = Field(default=2.0, gt=0)
    db_request_timeout: float = Field(default=3.0, gt=0)
    db_retry_after: int = Field(default=2, ge=1)

    # Model routing table (JSON list in CHATSERVICE_MODELS).
    models: Annotated[tuple[ModelRoute, ...], NoDecode] = DEFAULT_MODELS

    # Seconds the echo backend waits per word: lets demos and tests see a stream unfold.
    echo_token_delay: float = Field(default=0.0, ge=0)
    # Words in one echo answer at most (per choice), whatever the prompt's length.
    echo_max_tokens: int = Field(default=1024, ge=1)
    # The echo backend is for development and tests; production refuses it unless told.
    allow_echo_in_production: bool = False

    # Request bounds. OpenAI's own bound on `n` is 128.
    max_request_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    max_n: int = Field(default=128, ge=1, le=128)
    # What the server accepts before the app sees a request (request line and headers).
    max_header_bytes: int = Field(default=64 * 1024, ge=1024)
    header_timeout: float = Field(default=10.0, gt=0)

    # Upstream client.
    upstream_connect_timeout: float = Field(default=5.0, gt=0)
    upstream_first_byte_timeout: float = Field(default=60.0, gt=0)
    upstream_chunk_timeout: float = Field(default=30.0, gt=0)
    upstream_total_timeout: float = Field(default=600.0, gt=0)
    upstream_max_retries: int = Field(default=2, ge=0)
    upstream_retry_backoff: float = Field(default=0.2, ge=0)
    upstream_pool_size: int = Field(default=256, ge=1)
    # Passive health of endpoints: this many consecutive failures (connect errors, 5xx,
    # timeouts) eject one for a cooldown that doubles on each ejection in a row, up to the max.
    endpoint_failures_to_eject: int = Field(default=3, ge=1)
    endpoint_cooldown: float = Field(default=5.0, gt=0)
    endpoint_max_cooldown: float = Field(default=120.0, gt=0)
    # Endpoints with `discovery: dns`: each worker resolves their names this often, each
    # resolution bounded by the timeout, against resolv.conf's nameservers or this one
    # (`host` or `host:port`).
    dns_refresh_interval: float = Field(default=5.0, gt=0)
    dns_timeout: float = Field(default=2.0, gt=0)
    dns_nameserver: str | None = None
    # Backpressure: requests waiting when every endpoint of a route is at its cap.
    route_queue_size: int = Field(default=100, ge=0)
    route_queue_timeout: float = Field(default=5.0, gt=0)

    # Health.
    ready_db_timeout: float = Field(default=2.0, gt=0)
    health_backend_timeout: float = Field(default=2.0, gt=0)
    # Seconds one upstream's check (`GET /models`) is reused by every route and request.
    health_backend_cache_ttl: float = Field(default=5.0, ge=0)

    # Usage ledger: each worker queues one row per completion (chat, legacy, embeddings) and
    # writes them in batches, off the request path. While the database is down rows are held,
    # up to `ledger_max_held` per worker; beyond that new rows are dropped (and counted).
    ledger_batch_size: int = Field(default=500, ge=1)
    ledger_flush_interval: float = Field(default=1.0, gt=0)
    ledger_max_held: int = Field(default=100_000, ge=1)
    ledger_write_timeout: float = Field(default=5.0, gt=0)
    # Seconds a stopping worker spends writing what it still holds.
    ledger_shutdown_timeout: float = Field(default=10.0, gt=0)

    # Rate limits. With Redis they are exact across workers and replicas; without, a SQLite
    # file every worker of the pod shares (`rate_limit_file`) makes them exact per pod.
    redis_url: SecretStr | None = None
    redis_timeout: float = Field(default=0.25, gt=0)
    # What a request gets when the limit store cannot be asked: let through, or 503.
    rate_limit_failure_mode: Literal["open", "closed"] = "open"
    rate_limit_file: Path = Path("./var/rate-limits.sqlite")
    # Seconds a key's limit settings are cached per worker: how long a change takes.
    limits_cache_ttl: float = Field(default=10.0, ge=0)
    # Seconds a worker reuses a key's, user's or team's spend read from the ledger (it adds
    # its own costs meanwhile): how far other workers may overshoot a budget.
    budget_cache_ttl: float = Field(default=5.0, ge=0)

    # Tracing (the rest is read by OpenTelemetry from its `OTEL_*` variables). Message content
    # on the chat spans: OpenTelemetry's GenAI instrumentations' opt-in, under its standard name.
    capture_message_content: bool = Field(
        default=False, validation_alias="OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
    )

    # HTTP.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()

    # gunicorn.
    # Loopback in development: `make run` serves the public development key. The image sets
    # CHATSERVICE_HOST=0.0.0.0, since a container is reached through its pod's address.
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=2, ge=1)
    # Longer than the longest stream (upstream_total_timeout), so a worker is never killed
    # mid-stream for being "silent" and a graceful shutdown lets streams finish.
    timeout: int = Field(default=660, ge=1)
    graceful_timeout: int = Field(default=630, ge=1)
    keepalive: int = Field(default=5, ge=0)
    max_requests: int = Field(default=10_000, ge=0)
    max_requests_jitter: int = Field(default=1_000, ge=0)

    @field_validator("capture_message_content", mode="before")
    @classmethod
    def _capture_mode(cls, value: object) -> object:
        # Newer GenAI instrumentations take a mode instead of a boolean: a pod configured for
        # them must still start. The modes that keep content mean "on" (the spans are where
        # this service puts it); NO_CONTENT means off.
        if isinstance(value, str):
            mode = value.strip().upper()
            if mode in {"SPAN_ONLY", "EVENT_ONLY", "SPAN_AND_EVENT"}:
                return True
            if mode == "NO_CONTENT":
                return False
        return value

    @model_validator(mode="before")
    @classmethod
    def _parse_lists(cls, data: dict[str, object]) -> dict[str, object]:
        # Env values arrive as strings: MODELS is JSON, CORS_ORIGINS JSON or comma-separated.
        models = data.get("models")
        if isinstance(models, str):
            data["models"] = json.loads(models)
        origins = data.get("cors_origins")
        if isinstance(origins, str):
            stripped = origins.strip()
            data["cors_origins"] = (
                json.loads(stripped)
                if stripped.startswith("[")
                else [o.strip() for o in stripped.split(",") if o.strip()]
            )
        return data

    @model_validator(mode="after")
    def _check(self) -> Self:
        names = [m.name for m in self.models]
        if len(names) != len(set(names)):
            raise ValueError("CHATSERVICE_MODELS: model names must be unique")
        for model in self.models:
            openai = {m.name for m in self.models if m.backend == "openai"}
            unknown = [f for f in model.fallbacks if f not in openai or f == model.name]
            if unknown:
                raise ValueError(
                    f"CHATSERVICE_MODELS: model {model.name!r} falls back to {unknown!r}, "
                    "which are not other openai models of the table"
                )
        if self.environment is Environment.PRODUCTION:
            key = self.admin_api_key.get_secret_value()
            if (
                key == DEVELOPMENT_ADMIN_KEY
                or len(key) < MIN_SECRET_LENGTH
                or not looks_random(key)
            ):
                raise ValueError(
                    "CHATSERVICE_ADMIN_API_KEY is the development placeholder, shorter than "
                    f"{MIN_SECRET_LENGTH} characters or not random enough; set a real secret "
                    "in production (e.g. `openssl rand -base64 32`)"
                )
            jwt_secret = self.jwt_secret.get_secret_value() if self.jwt_secret else None
            if jwt_secret is not None and (not looks_random(jwt_secret) or jwt_secret == key):
                raise ValueError(
                    "CHATSERVICE_JWT_SECRET is a placeholder, not random enough or the admin "
                    "key; set a secret of its own in production (e.g. `openssl rand -base64 32`)"
                )
            if self.is_sqlite:
                raise ValueError("CHATSERVICE_DATABASE_URL: use PostgreSQL in production")
            if "*" in self.cors_origins:
                raise ValueError("CHATSERVICE_CORS_ORIGINS: '*' is not allowed in production")
            if "null" in self.cors_origins:
                # Sandboxed iframes and file:// pages send `Origin: null`; anyone can make one.
                raise ValueError("CHATSERVICE_CORS_ORIGINS: 'null' is not allowed in production")
            echo = [m.name for m in self.models if m.backend == "echo"]
            if echo and not self.allow_echo_in_production:
                raise ValueError(
                    f"CHATSERVICE_MODELS: {', '.join(echo)} use the echo backend, which is for "
                    "development; set CHATSERVICE_ALLOW_ECHO_IN_PRODUCTION=true to serve it"
                )
        return self

    @cached_property
    def routes(self) -> dict[str, ModelRoute]:
        return {m.name: m for m in self.models}

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def looks_random(secret: str) -> bool:
    trigrams = [secret[i : i + 3] for i in range(len(secret) - 2)]
    return entropy_bits(secret) >= MIN_SECRET_ENTROPY_BITS and len(
        set(trigrams)
    ) >= MIN_DISTINCT_TRIGRAMS * len(trigrams)


def entropy_bits(secret: str) -> float:
    """An upper estimate of the randomness in `secret`: its length times the Shannon entropy of
    its own character frequencies."""
    counts = Counter(secret)
    per_char = -sum(c / len(secret) * math.log2(c / len(secret)) for c in counts.values())
    return per_char * len(secret)
