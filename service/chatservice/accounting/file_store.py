"""Rate limits without Redis: a SQLite file every worker of the pod opens, each check one
`BEGIN IMMEDIATE` transaction (SQLite's write lock), so the limits are exact across the pod's
workers. Replicas do not share the file: with several pods each allows the whole limit.

The same model as admit.lua and settle.lua, in Python; SQLite calls block, so they run on one
thread of the worker's own.
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from chatservice.accounting.limits import WINDOW_MS, Limit, LimitState, Verdict

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS gcra (key TEXT PRIMARY KEY, tat REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS leases (key TEXT NOT NULL, lease TEXT NOT NULL, "
    "expires REAL NOT NULL, PRIMARY KEY (key, lease))",
)


class FileLimitStore:
    def __init__(self, path: Path, timeout: float) -> None:
        self._path = path
        self._timeout = timeout
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="rate-limit-file")
        self._connection: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self._path, timeout=self._timeout, isolation_level=None, check_same_thread=False
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=OFF")  # the counts need not survive a crash
            for statement in _SCHEMA:
                connection.execute(statement)
            self._connection = connection
        return self._connection

    async def admit(
        self, limits: tuple[Limit, ...], tokens: int, lease: str, lease_ms: int
    ) -> Verdict:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._thread, self._admit, limits, tokens, lease, lease_ms
        )

    def settle(
        self, limits: tuple[Limit, ...], token_delta: int, lease: str
    ) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._thread, self._settle, limits, token_delta, lease)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=False)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _admit(self, limits: tuple[Limit, ...], tokens: int, lease: str, lease_ms: int) -> Verdict:
        db = self._connect()
        db.execute("BEGIN IMMEDIATE")
        try:
            verdict = _check_and_take(db, limits, tokens, lease, lease_ms, time.time() * 1000)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return verdict

    def _settle(self, limits: tuple[Limit, ...], token_delta: int, lease: str) -> None:
        db = self._connect()
        now = time.time() * 1000
        db.execute("BEGIN IMMEDIATE")
        try:
            for limit in limits:
                if limit.kind == "concurrent":
                    db.execute(
                        "DELETE FROM leases WHERE key = ? AND lease = ?", (limit.store_key, lease)
                    )
                elif limit.kind == "tokens" and token_delta:
                    tat = max(_tat(db, limit.store_key, now), now)
                    _set_tat(db, limit.store_key, tat + token_delta * WINDOW_MS / limit.limit)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def _check_and_take(
    db: sqlite3.Connection,
    limits: tuple[Limit, ...],
    tokens: int,
    lease: str,
    lease_ms: int,
    now: float,
) -> Verdict:
    states: list[LimitState] = []
    new_tats: dict[str, float] = {}
    for limit in limits:
        key = limit.store_key
        if limit.kind == "concurrent":
            db.execute("DELETE FROM leases WHERE key = ? AND expires <= ?", (key, now))
            row = db.execute(
                "SELECT count(*), min(expires) FROM leases WHERE key = ?", (key,)
            ).fetchone()
            held, oldest = int(row[0]), row[1]
            if held >= limit.limit:
                retry = max(1, math.ceil(oldest - now))
                return Verdict(False, (LimitState(0, 0),), limit, retry)
            states.append(LimitState(limit.limit - held - 1, 0))
            continue
        cost = tokens if limit.kind == "tokens" else 1
        interval = WINDOW_MS / limit.limit
        tat = max(_tat(db, key, now), now)
        new_tat = tat + cost * interval
        if new_tat - now > WINDOW_MS + 0.001:
            retry = -1 if cost > limit.limit else math.ceil(new_tat - now - WINDOW_MS)
            state = LimitState(
                math.floor((WINDOW_MS - (tat - now)) / interval), math.ceil(tat - now)
            )
            return Verdict(False, (state,), limit, retry)
        new_tats[key] = new_tat
        remaining = math.floor((WINDOW_MS - (new_tat - now)) / interval + 1e-6)
        states.append(LimitState(remaining, math.ceil(new_tat - now)))
    for limit in limits:
        if limit.kind == "concurrent":
            db.execute(
                "INSERT OR REPLACE INTO leases (key, lease, expires) VALUES (?, ?, ?)",
                (limit.store_key, lease, now + lease_ms),
            )
        else:
            _set_tat(db, limit.store_key, new_tats[limit.store_key])
    return Verdict(True, tuple(states))


def _tat(db: sqlite3.Connection, key: str, now: float) -> float:
    row = db.execute("SELECT tat FROM gcra WHERE key = ?", (key,)).fetchone()
    return float(row[0]) if row is not None else now


def _set_tat(db: sqlite3.Connection, key: str, tat: float) -> None:
    db.execute("INSERT OR REPLACE INTO gcra (key, tat) VALUES (?, ?)", (key, tat))
