"""The ledger's SQLite batches (multi-row INSERTs written in the event loop): every row arrives
whole, with its values as SQLAlchemy stores them, a batch written twice is stored once, and
another worker's write lock delays rows without losing any or holding the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from chatservice.accounting.ledger import UsageLedger
from chatservice.accounting.sqlite_writer import LOCK_WAIT
from chatservice.db.migrate import upgrade
from tests.service.accounting_db import ledger_rows

START = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _row(i: int) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "created_at": START + timedelta(seconds=i),
        "request_id": f"req-{i}",
        "key_id": uuid.uuid4() if i % 2 else None,
        "user_id": None,
        "team_id": uuid.uuid4() if i % 3 == 0 else None,
        "model": "m",
        "api": "embeddings" if i % 5 == 0 else "chat/completions",
        "upstream": None if i % 7 == 0 else "stub",
        "stream": i % 2 == 0,
        "prompt_tokens": i,
        "completion_tokens": 2 * i,
        "total_tokens": 3 * i,
        "tokens_estimated": i % 4 == 0,
        "outcome": "success",
        "status": 200,
        "latency_ms": i / 7,
        "time_to_first_token_ms": None if i % 2 else i / 3,
        "cost_usd": i * 1e-6,
    }


async def test_a_large_batch_is_stored_whole_and_once(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    await asyncio.to_thread(upgrade, url)  # migrations run their own event loop
    engine = create_async_engine(url)
    ledger = UsageLedger(
        engine, batch_size=1_300, flush_interval=60, max_held=10_000, write_timeout=10
    )
    rows = [_row(i) for i in range(1_299)]  # in transactions of at most 100 rows
    try:
        for row in rows:
            ledger.record(row)
        assert await ledger.flush()
        for row in rows[:3]:  # as after an answer lost on its way back
            ledger.record(row)
        assert await ledger.flush()
    finally:
        await engine.dispose()
    stored = {event.id: event for event in await ledger_rows(url)}
    assert len(stored) == len(rows)
    for expected in rows:
        event = stored[expected["id"]]
        assert {name: getattr(event, name) for name in expected} == expected


async def test_another_workers_write_lock_delays_rows_and_loses_none(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    url = f"sqlite+aiosqlite:///{path}"
    await asyncio.to_thread(upgrade, url)
    engine = create_async_engine(url)
    ledger = UsageLedger(engine, batch_size=100, flush_interval=60, max_held=1_000, write_timeout=5)
    other_worker = sqlite3.connect(path, isolation_level=None)
    rows = [_row(i) for i in range(150)]
    try:
        other_worker.execute("BEGIN IMMEDIATE")  # its write lock, held
        for row in rows:
            ledger.record(row)
        started = time.monotonic()
        assert not await ledger.flush()
        assert time.monotonic() - started < LOCK_WAIT + 0.5  # the loop was not held long
        assert ledger.queued == len(rows)
        other_worker.execute("COMMIT")
        assert await ledger.flush()
        assert ledger.queued == 0
    finally:
        other_worker.close()
        await ledger.close(1)
        await engine.dispose()
    assert {event.id for event in await ledger_rows(url)} == {row["id"] for row in rows}
