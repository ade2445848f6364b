"""The usage ledger loses nothing: rows are held while PostgreSQL is down (here stopped for 10 s)
and written when it is back, and a stopping gunicorn worker writes what it still holds."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from chatservice.db.migrate import upgrade
from chatservice.main import create_app
from tests.service.accounting_db import new_key, wait_for_rows
from tests.service.gunicorn_server import Gunicorn
from tests.service.harness import AUTH, CHAT, make_settings, serve
from tests.service.postgres import PostgresServer, running_postgres

ECHO = {"model": "echo", "messages": [{"role": "user", "content": "one two three"}]}
OUTAGE_SECONDS = 10


@pytest.fixture
def own_postgres(pg_bindir: Path) -> Iterator[PostgresServer]:
    with running_postgres(pg_bindir) as server:
        upgrade(server.url())
        yield server


@pytest.mark.timeout(90)
async def test_a_10_second_database_outage_loses_no_usage_row(
    own_postgres: PostgresServer,
) -> None:
    settings = make_settings(
        own_postgres.url(),
        db_connect_timeout=1,
        db_pool_timeout=1,
        ledger_write_timeout=1,
        ledger_flush_interval=0.2,
    )
    app = create_app(settings)
    sent = 0
    async with serve(app) as http:
        ledger = app.state.runtime.accounting.ledger

        async def complete() -> None:
            nonlocal sent
            response = await http.post(CHAT, json=ECHO, headers=AUTH)  # no lookup: bootstrap key
            assert response.status_code == 200, response.text
            sent += 1

        for _ in range(5):
            await complete()
        own_postgres.stop()
        held = 0
        try:
            ends = time.monotonic() + OUTAGE_SECONDS
            while time.monotonic() < ends:
                await complete()
                held = max(held, ledger.queued)
                await asyncio.sleep(0.25)
        finally:
            own_postgres.start()
        assert held > 0, "rows written while the database was stopped?"
        for _ in range(5):
            await complete()
        rows = await wait_for_rows(own_postgres.url(), sent, within=30)
        assert ledger.queued == 0
    assert len(rows) == sent
    assert len({row.id for row in rows}) == sent
    assert all(row.outcome == "success" and row.completion_tokens == 3 for row in rows)


async def test_a_stopping_worker_writes_the_rows_it_holds(
    start_gunicorn: Callable[..., Gunicorn], pg_url: str
) -> None:
    key, key_id = await new_key(pg_url)
    # Written only at shutdown: the interval is longer than the test.
    server = start_gunicorn(CHATSERVICE_LEDGER_FLUSH_INTERVAL="600")
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(20):
            response = await http.post(
                server.api + "/chat/completions",
                json=ECHO,
                headers={"Authorization": f"Bearer {key}"},
            )
            assert response.status_code == 200
    assert await wait_for_rows(pg_url, 20, within=0.5, key_id=key_id) == []
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)
    rows = await wait_for_rows(pg_url, 20, within=5, key_id=key_id)
    assert len(rows) == 20
