"""The checks behind the health tiers."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from chatservice.config import ModelRoute
from chatservice.db.migrate import applied_revisions
from chatservice.health.schemas import ComponentHealth, EndpointHealth
from chatservice.runtime import Runtime


@dataclass(frozen=True, slots=True)
class DatabaseProbe:
    reachable: bool
    latency_ms: float
    revisions: frozenset[str]
    error: str | None = None


async def probe_database(runtime: Runtime) -> DatabaseProbe:
    """Ping the database and read its schema revision, all within the readiness timeout."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(runtime.settings.ready_db_timeout):
            async with runtime.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
                revisions = await applied_revisions(connection)
    except (TimeoutError, OSError, DBAPIError) as exc:
        return DatabaseProbe(False, _ms_since(started), frozenset(), type(exc).__name__)
    return DatabaseProbe(True, _ms_since(started), revisions)


async def probe_backend(runtime: Runtime, route: ModelRoute) -> ComponentHealth:
    started = time.perf_counter()
    health = await runtime.routing.backend(route).check(route)
    reports = runtime.routing.endpoints(route)
    status, error = health.status, health.error
    shunned = [r for r in reports or () if r.state != "healthy"]
    if shunned and status == "ok":
        status, error = (
            "degraded",
            f"{len(shunned)} of {len(reports or ())} endpoints ejected or resting",
        )
    return ComponentHealth(
        status=status,
        latency_ms=_ms_since(started),
        error=error,
        endpoints=None
        if reports is None
        else [EndpointHealth.model_validate(r, from_attributes=True) for r in reports],
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
