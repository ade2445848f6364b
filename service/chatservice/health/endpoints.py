"""Health endpoints, unauthenticated: the probes and monitors call them."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from chatservice import __version__
from chatservice.config import API_PREFIX
from chatservice.db.schema_history import SchemaStatus
from chatservice.health.schemas import (
    ComponentHealth,
    HealthReport,
    Liveness,
    Readiness,
    SchemaHealth,
)
from chatservice.health.service import DatabaseProbe, probe_backend, probe_database
from chatservice.kit.api_docs import error_responses
from chatservice.kit.deps import RuntimeDep
from chatservice.runtime import Runtime

router = APIRouter(prefix=f"{API_PREFIX}/health", tags=["health"])


@router.get(
    "/live",
    response_model=Liveness,
    responses=error_responses(),
    summary="Liveness: the process answers",
)
async def live() -> Liveness:
    return Liveness()


@router.get(
    "/ready",
    response_model=Readiness,
    responses={
        503: {"model": Readiness, "description": "Not ready, with the reason"},
        **error_responses(),
    },
    summary="Readiness: database reachable and schema not behind the code",
)
async def ready(runtime: RuntimeDep) -> JSONResponse:
    reason: str | None = None
    if runtime.draining:
        reason = "draining"
    else:
        probe = await probe_database(runtime)
        if not probe.reachable:
            reason = "database unreachable"
        elif runtime.schema.status(probe.revisions) is SchemaStatus.BEHIND:
            reason = "database schema is behind the code: migrations not applied"
    if reason is not None:
        return JSONResponse(Readiness(status="unavailable", reason=reason).model_dump(), 503)
    return JSONResponse(Readiness(status="ok").model_dump())


@router.get(
    "/",
    response_model=HealthReport,
    responses={
        503: {"model": HealthReport, "description": "The database or its schema is unusable"},
        **error_responses(),
    },
    summary="Every component with its status and latency",
    description="`status` is `degraded` when any backend is; the answer is 503 only when "
    "this pod cannot serve at all (database, schema, draining), since a backend's upstream "
    "is shared by every pod.",
)
async def report(runtime: RuntimeDep) -> JSONResponse:
    routes = runtime.routing.routes
    probe, backend_health = await asyncio.gather(
        probe_database(runtime), asyncio.gather(*(probe_backend(runtime, r) for r in routes))
    )
    database = ComponentHealth(
        status="ok" if probe.reachable else "unavailable",
        latency_ms=probe.latency_ms,
        error=probe.error,
    )
    schema = _schema_health(runtime, probe)
    backends = {route.name: health for route, health in zip(routes, backend_health, strict=True)}
    serving = database.status == "ok" and schema.status == "ok" and not runtime.draining
    healthy = serving and all(b.status == "ok" for b in backends.values())
    body = HealthReport(
        status="ok" if healthy else "degraded",
        version=__version__,
        uptime_seconds=round(time.monotonic() - runtime.started_at, 3),
        draining=runtime.draining,
        database=database,
        schema=schema,
        backends=backends,
    )
    return JSONResponse(body.model_dump(by_alias=True), 200 if serving else 503)


def _schema_health(runtime: Runtime, probe: DatabaseProbe) -> SchemaHealth:
    head = ",".join(sorted(runtime.schema.heads))
    if not probe.reachable:
        return SchemaHealth(status="unavailable", revision=None, head=head, state="unknown")
    status = runtime.schema.status(probe.revisions)
    return SchemaHealth(
        status="unavailable" if status is SchemaStatus.BEHIND else "ok",
        revision=",".join(sorted(probe.revisions)) or None,
        head=head,
        state=status.value,
    )
