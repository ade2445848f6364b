"""Settings: one pydantic-settings class read from `CHATSERVICE_*` environment variables."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The development admin key `make run` prints. It is public (it is in this file), so it is
# refused outside development, like any key that is too short to be a real secret.
DEVELOPMENT_ADMIN_KEY = "sk-dev-chatservice-local-development-key"
MIN_SECRET_LENGTH = 32
# Routers carry the whole prefix, so a route's path is the template metrics and logs show.
API_PREFIX = "/api/v1"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class ModelRoute(BaseModel):
    """One public model name and where its requests go."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, description="Public model name clients send as `model`.")
    backend: Literal["echo", "openai"] = "echo"
    base_url: str | None = Field(default=None, description="Upstream base URL, e.g. .../v1")
    upstream_model: str | None = Field(default=None, description="Model name sent upstream.")
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the upstream API key."
    )
    owned_by: str = "chatservice"

    @model_validator(mode="after")
    def _openai_needs_base_url(self) -> Self:
        if self.backend == "openai" and not self.base_url:
            raise ValueError(f"model {self.name!r}: the openai backend needs base_url")
        return self

    def upstream_api_key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        return None


DEFAULT_MODELS = (ModelRoute(name="echo", backend="echo"),)


class Settings(BaseSettings):
    # hide_input_in_errors: a refused configuration must not print the secrets it was given.
    model_config = SettingsConfigDict(
        env_prefix="CHATSERVICE_", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    environment: Environment = Environment.DEVELOPMENT
    log_level: str = "INFO"

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

    # Model routing table (JSON list in CHATSERVICE_MODELS).
    models: Annotated[tuple[ModelRoute, ...], NoDecode] = DEFAULT_MODELS

    # Seconds the echo backend waits per word: lets demos and tests see a stream unfold.
    echo_token_delay: float = Field(default=0.0, ge=0)

    # Upstream client.
    upstream_connect_timeout: float = Field(default=5.0, gt=0)
    upstream_first_byte_timeout: float = Field(default=60.0, gt=0)
    upstream_chunk_timeout: float = Field(default=30.0, gt=0)
    upstream_total_timeout: float = Field(default=600.0, gt=0)
    upstream_max_retries: int = Field(default=2, ge=0)
    upstream_retry_backoff: float = Field(default=0.2, ge=0)
    upstream_pool_size: int = Field(default=256, ge=1)

    # Health.
    ready_db_timeout: float = Field(default=2.0, gt=0)
    health_backend_timeout: float = Field(default=2.0, gt=0)

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
        if self.environment is Environment.PRODUCTION:
            key = self.admin_api_key.get_secret_value()
            if key == DEVELOPMENT_ADMIN_KEY or len(key) < MIN_SECRET_LENGTH:
                raise ValueError(
                    "CHATSERVICE_ADMIN_API_KEY is the development placeholder or shorter than "
                    f"{MIN_SECRET_LENGTH} characters; set a real secret in production"
                )
            if self.is_sqlite:
                raise ValueError("CHATSERVICE_DATABASE_URL: use PostgreSQL in production")
            if "*" in self.cors_origins:
                raise ValueError("CHATSERVICE_CORS_ORIGINS: '*' is not allowed in production")
        return self

    @cached_property
    def routes(self) -> dict[str, ModelRoute]:
        return {m.name: m for m in self.models}

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
