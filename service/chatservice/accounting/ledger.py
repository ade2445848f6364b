"""The usage ledger's writer: rows are queued in memory by the request and written by one task
per worker in batches (one multi-row insert each), every `flush_interval` seconds or as soon as
`batch_size` rows wait. A SQLite file is written in the event loop itself (sqlite_writer.py).

When the database cannot take a batch, its rows go back to the front of the queue and are
written once it answers again; a worker holds at most `max_held` rows, and rows beyond that are
dropped and counted. Every row has an id of its own and is inserted with "on conflict do
nothing", so a batch written twice (its commit went through but the answer was lost) is stored
once.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections import deque
from typing import Any

from opentelemetry.context import Context
from opentelemetry.trace import Tracer
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from chatservice.accounting.sqlite_writer import ROWS_PER_TRANSACTION, SQLiteWriter
from chatservice.accounting.tables import UsageEvent
from chatservice.db.outage import DATABASE_ERRORS, ThrottledLog, within
from chatservice.observability import metrics

log = logging.getLogger(__name__)
ledger_log = ThrottledLog(logging.getLogger("chatservice.ledger"), interval=30.0)

Row = dict[str, Any]
# A write the database refused: the rows are held and written again.
_WRITE_ERRORS = (*DATABASE_ERRORS, sqlite3.Error)


class UsageLedger:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        batch_size: int,
        flush_interval: float,
        max_held: int,
        write_timeout: float,
        tracer: Tracer | None = None,
    ) -> None:
        self._engine = engine
        # One span per batch, so that its connection and insert are one trace of their own.
        self._tracer = tracer
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_held = max_held
        self._write_timeout = write_timeout
        self._queue: deque[Row] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        is_sqlite = engine.dialect.name != "postgresql"
        insert = sqlite.insert if is_sqlite else postgresql.insert
        self._statement = insert(UsageEvent).on_conflict_do_nothing(index_elements=["id"])
        database = engine.url.database if is_sqlite else None
        self._sqlite: SQLiteWriter | None = None
        if database and database != ":memory:":
            self._sqlite = SQLiteWriter(database, engine.dialect)
            # Written in the event loop: short transactions keep it answering requests.
            self._batch_size = min(batch_size, ROWS_PER_TRANSACTION)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def unwritten(self) -> list[Row]:
        """The rows queued or held now (not those of a batch being written)."""
        return list(self._queue)

    def record(self, row: Row) -> None:
        """Queue one row; never waits (the request path calls it)."""
        if len(self._queue) >= self._max_held:
            metrics.LEDGER_DROPPED.inc()
            return
        self._queue.append(row)
        metrics.LEDGER_QUEUED.inc()
        if len(self._queue) >= self._batch_size:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-ledger")

    async def close(self, seconds: float) -> None:
        """Stop the task and write what is left, for at most `seconds`."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        deadline = time.monotonic() + seconds
        while self._queue and time.monotonic() < deadline:
            if not await self._write_batch(min(self._write_timeout, deadline - time.monotonic())):
                await asyncio.sleep(min(0.5, max(deadline - time.monotonic(), 0)))
        if self._queue:
            log.error("usage rows lost at shutdown", extra={"rows": len(self._queue)})
            metrics.LEDGER_DROPPED.inc(len(self._queue))
            metrics.LEDGER_QUEUED.dec(len(self._queue))
            self._queue.clear()
        if self._sqlite is not None:
            self._sqlite.close()

    async def _run(self) -> None:
        while not self._closing:
            try:
                await asyncio.wait_for(self._wake.wait(), self._flush_interval)
            except TimeoutError:
                pass
            self._wake.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Write everything queued now; False when the database refused a batch (the rows
        stay queued for the next try)."""
        while self._queue:
            if not await self._write_batch(self._write_timeout):
                return False
            await asyncio.sleep(0)  # requests go on between batches
        return True

    async def _write_batch(self, seconds: float) -> bool:
        count = min(len(self._queue), self._batch_size)
        batch = [self._queue.popleft() for _ in range(count)]
        started = time.perf_counter()
        try:
            await within(seconds, self._insert(batch))
        except _WRITE_ERRORS as exc:
            self._queue.extendleft(reversed(batch))
            metrics.LEDGER_WRITE_FAILURES.inc()
            ledger_log.warning("database unreachable: usage rows held", cause=exc)
            return False
        except BaseException:
            self._queue.extendleft(reversed(batch))
            raise
        metrics.LEDGER_WRITE_DURATION.observe(time.perf_counter() - started)
        metrics.LEDGER_WRITTEN.inc(count)
        metrics.LEDGER_QUEUED.dec(count)
        return True

    async def _insert(self, batch: list[Row]) -> None:
        if self._tracer is None:
            await self._execute(batch)
            return
        with self._tracer.start_as_current_span(
            "usage ledger write", context=Context(), attributes={"chatservice.rows": len(batch)}
        ):
            await self._execute(batch)

    async def _execute(self, batch: list[Row]) -> None:
        if self._sqlite is not None:
            self._sqlite.write(batch)
            return
        async with self._engine.begin() as connection:
            await connection.execute(self._statement, batch)
