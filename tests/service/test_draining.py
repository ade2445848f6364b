"""SIGTERM: readiness says 503 at once, and the server's own shutdown handler still runs."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from chatservice.main import create_app
from tests.service.harness import make_settings, serve


@pytest.fixture
def server_handler() -> Iterator[list[int]]:
    """Stands in for uvicorn's SIGTERM handler, which the app must chain to."""
    calls: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        calls.append(signum)

    previous = signal.signal(signal.SIGTERM, handle)
    yield calls
    signal.signal(signal.SIGTERM, previous)


async def test_sigterm_makes_readiness_503_and_reaches_the_server(
    pg_url: str, server_handler: list[int]
) -> None:
    async with serve(create_app(make_settings(pg_url))) as http:
        assert (await http.get("/api/v1/health/ready")).status_code == 200
        os.kill(os.getpid(), signal.SIGTERM)
        draining = await http.get("/api/v1/health/ready")
        assert draining.status_code == 503
        assert draining.json()["reason"] == "draining"
        assert (await http.get("/api/v1/health/live")).status_code == 200
        assert (await http.get("/api/v1/health/")).json()["draining"] is True
    assert server_handler == [signal.SIGTERM]
