"""Response models of the health endpoints."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

Status = Literal["ok", "degraded", "unavailable"]


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    reason: str | None = Field(default=None, examples=["database unreachable"])


class EndpointHealth(BaseModel):
    endpoint: str = Field(
        description="`model/ordinal`, or `model/ordinal.serial` for one discovered from DNS: "
        "the address is not shown."
    )
    state: Literal["healthy", "ejected", "rate_limited"]
    seconds_left: float | None = Field(description="Until it may be tried again.")
    outstanding: int
    last_error: str | None


class ComponentHealth(BaseModel):
    status: Status
    latency_ms: float | None = None
    error: str | None = None
    # A backend's endpoints as this worker sees them (passive health is per worker).
    endpoints: list[EndpointHealth] | None = None


class SchemaHealth(BaseModel):
    status: Status
    revision: str | None = Field(description="The database's Alembic revision.")
    head: str = Field(description="The newest revision this code knows.")
    state: Literal["current", "behind", "ahead", "unknown"]


class HealthReport(BaseModel):
    status: Status
    version: str
    uptime_seconds: float
    draining: bool
    database: ComponentHealth
    schema_: SchemaHealth = Field(alias="schema", serialization_alias="schema")
    backends: dict[str, ComponentHealth]
