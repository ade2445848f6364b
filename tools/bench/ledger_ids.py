"""Benchmark: the SQLite ledger's insert cost per row with random (v4) and time-ordered (v7)
ids, as the table grows (not a test).

    python -m tools.bench.ledger_ids [--rows 100000] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from chatservice.accounting.event_ids import new_event_id
from chatservice.accounting.sqlite_writer import SQLiteWriter
from chatservice.accounting.tables import UsageEvent

QUARTERS = 4


def usage_row(new_id: Callable[[], uuid.UUID]) -> dict[str, Any]:
    """A row as an answered request records it (bootstrap key: no key, user or team)."""
    row: dict[str, Any] = {column.name: None for column in UsageEvent.__table__.columns}
    row.update(
        id=new_id(),
        created_at=datetime.now(UTC),
        request_id=uuid.uuid4().hex,
        model="bench",
        api="chat/completions",
        upstream="stub",
        stream=False,
        prompt_tokens=5,
        completion_tokens=7,
        total_tokens=12,
        tokens_estimated=False,
        outcome="success",
        status=200,
        latency_ms=1.2,
        cost_usd=0.0,
    )
    return row


async def measure(name: str, new_id: Callable[[], uuid.UUID], rows: int, batch: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "ledger.sqlite"
        engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
        async with engine.begin() as connection:
            await connection.run_sync(UsageEvent.metadata.create_all)
        writer = SQLiteWriter(str(path), engine.dialect)
        quarter = rows // QUARTERS
        for n in range(QUARTERS):
            made = [usage_row(new_id) for _ in range(quarter)]
            started = time.process_time()
            for i in range(0, quarter, batch):
                writer.write(made[i : i + batch])
            per_row = (time.process_time() - started) / quarter * 1e6
            print(
                f"{name}: rows {n * quarter:>7,}-{(n + 1) * quarter:>7,}  {per_row:5.1f} µs CPU/row"
            )
        writer.close()
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(measure("uuid4", uuid.uuid4, args.rows, args.batch))
    asyncio.run(measure("uuid7", new_event_id, args.rows, args.batch))


if __name__ == "__main__":
    main()
