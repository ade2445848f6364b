"""Cached keys dropped on every worker of every replica within about a second of a change.

A change that can make a cached key wrong (revoke, rotate, expiry moved, models narrowed,
owner deactivated or demoted) writes a row to `auth_invalidations` in the same transaction.
Each worker asks for the log's highest id once per `key_invalidation_poll_interval` (one
indexed query, on PostgreSQL and SQLite alike) and empties its key cache when it moved. The
worker that made the change empties its own cache as soon as the transaction commits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from chatservice.db.clock import utc_now
from chatservice.db.outage import DATABASE_ERRORS, database_log
from chatservice.keys.service import KeyAuthenticator
from chatservice.keys.tables import AuthInvalidation
from chatservice.kit.periodic import repeating

# `session.info` flag: this transaction changed keys, so the worker's cache goes on commit.
CHANGED = "chatservice.keys_changed"
# Rows older than this are pruned: only the highest id matters.
_KEEP = timedelta(hours=1)


async def record_key_change(session: AsyncSession) -> None:
    """Tell every worker that cached keys may be wrong once this transaction commits."""
    session.add(AuthInvalidation())
    await session.execute(
        delete(AuthInvalidation).where(AuthInvalidation.created_at < utc_now() - _KEEP)
    )
    await session.flush()
    session.info[CHANGED] = True


def changed_keys(session: AsyncSession) -> bool:
    return bool(session.info.get(CHANGED))


class InvalidationWatcher:
    """Polls the log's highest id and empties the authenticator's cache when it moves."""

    def __init__(
        self,
        engine: AsyncEngine,
        authenticator: KeyAuthenticator,
        interval: float,
        timeout: float,
    ) -> None:
        self._engine = engine
        self._authenticator = authenticator
        self._interval = interval
        self._timeout = timeout
        self._seen: int | None = None

    async def check(self) -> None:
        """One poll. A failed one changes nothing: the cache keeps serving, as during any
        database outage, and the next poll that succeeds empties it if anything moved."""
        try:
            async with asyncio.timeout(self._timeout), self._engine.connect() as connection:
                latest = await connection.scalar(select(func.max(AuthInvalidation.id)))
        except DATABASE_ERRORS as exc:
            database_log.error("database unreachable: key invalidations not read", cause=exc)
            return
        latest = latest or 0
        # Also on the first read: until then nothing was checked, and a change made before
        # it (while the database was slow to answer a starting worker) must not be missed.
        if latest != self._seen:
            self._authenticator.invalidate()
        self._seen = latest

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        # The first read before any request: it only sets where the log stands (the cache is
        # empty). Should it fail, the first read that succeeds empties the cache.
        await self.check()
        async with repeating(self.check, self._interval, "key invalidation poll"):
            yield
