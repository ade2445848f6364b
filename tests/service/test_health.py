"""The three health tiers against real databases: stopped, behind, ahead."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chatservice.db.migrate import script_directory, upgrade
from chatservice.main import create_app
from tests.service.harness import make_settings, serve
from tests.service.postgres import PostgresServer, running_postgres
from tests.service.stub_upstream import StubUpstream

LIVE, READY, REPORT = "/api/v1/health/live", "/api/v1/health/ready", "/api/v1/health/"


@pytest.fixture
def own_server(pg_bindir: Path) -> Iterator[PostgresServer]:
    """A PostgreSQL of this test's own, since the test stops it."""
    with running_postgres(pg_bindir) as server:
        yield server


async def test_readiness_follows_the_database_while_liveness_stays_up(
    own_server: PostgresServer,
) -> None:
    url = own_server.url()
    await asyncio.to_thread(upgrade, url)
    async with serve(create_app(make_settings(url, ready_db_timeout=1.0))) as http:
        assert (await http.get(READY)).status_code == 200

        await asyncio.to_thread(own_server.stop)
        down = await http.get(READY)
        assert down.status_code == 503
        assert down.json() == {"status": "unavailable", "reason": "database unreachable"}
        assert (await http.get(LIVE)).status_code == 200
        report = await http.get(REPORT)
        assert report.status_code == 503
        assert report.json()["database"]["status"] == "unavailable"

        await asyncio.to_thread(own_server.start)
        assert (await http.get(READY)).status_code == 200


async def test_schema_behind_is_not_ready_and_unknown_newer_revision_is(
    create_database: Callable[[], str],
) -> None:
    url = create_database()
    script = script_directory()
    head = script.get_current_head()
    assert head is not None
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str), "the schema-behind test needs two migrations"
    await asyncio.to_thread(upgrade, url, previous)

    async with serve(create_app(make_settings(url))) as http:
        behind = await http.get(READY)
        assert behind.status_code == 503
        assert "behind" in behind.json()["reason"]
        schema = (await http.get(REPORT)).json()["schema"]
        assert schema == {"status": "unavailable", "revision": previous, "head": head,
                          "state": "behind"}  # fmt: skip

        await asyncio.to_thread(upgrade, url)
        assert (await http.get(READY)).status_code == 200

        # A newer release's migration ran (expand/contract): this version keeps serving.
        engine = create_async_engine(url)
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
        await engine.dispose()
        assert (await http.get(READY)).status_code == 200
        assert (await http.get(REPORT)).json()["schema"]["state"] == "ahead"


async def test_never_migrated_database_is_not_ready(create_database: Callable[[], str]) -> None:
    async with serve(create_app(make_settings(create_database()))) as http:
        response = await http.get(READY)
    assert response.status_code == 503
    assert "behind" in response.json()["reason"]


async def test_report_lists_every_component(pg_url: str, upstream: StubUpstream) -> None:
    async with serve(create_app(make_settings(pg_url, upstream))) as http:
        healthy = await http.get(REPORT)
        assert healthy.status_code == 200
        body = healthy.json()
        assert body["status"] == "ok"
        assert body["database"]["status"] == "ok"
        assert body["database"]["latency_ms"] >= 0
        assert body["schema"]["state"] == "current"
        assert set(body["backends"]) == {"echo", "upstream"}
        assert body["version"]
        assert body["uptime_seconds"] >= 0

    closed = make_settings(pg_url, StubUpstream())  # a stub that was never started
    async with serve(create_app(closed)) as http:
        degraded = await http.get(REPORT)
    assert degraded.status_code == 200  # an unreachable upstream is not this pod's fault
    assert degraded.json()["status"] == "degraded"
    assert degraded.json()["backends"]["upstream"]["status"] == "unavailable"
    assert degraded.json()["backends"]["echo"]["status"] == "ok"


async def test_health_needs_no_key(client: object) -> None:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    for path in (LIVE, READY, REPORT):
        assert (await client.get(path)).status_code == 200
