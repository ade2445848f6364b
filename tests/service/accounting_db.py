"""Helpers of the accounting tests: keys stored straight in a database (the keys API is not
needed for them), and the usage ledger's rows read back."""

from __future__ import annotations

import asyncio
import time
import uuid

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from chatservice.accounting.tables import UsageEvent
from chatservice.keys.service import create_key
from chatservice.users.tables import User


async def new_key(database_url: str, *, with_user: bool = True) -> tuple[str, uuid.UUID]:
    """A member key (its plaintext and id), owned by a new user unless `with_user` is off."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            async with AsyncSession(bind=connection) as session:
                user_id = None
                if with_user:
                    user = User(email=f"{uuid.uuid4().hex}@example.com")
                    session.add(user)
                    await session.flush()
                    user_id = user.id
                plaintext, row = await create_key(session, name="accounting", user_id=user_id)
                await session.flush()
                return plaintext, row.id
    finally:
        await engine.dispose()


async def ledger_rows(database_url: str, **where: object) -> list[UsageEvent]:
    engine = create_async_engine(database_url)
    try:
        async with AsyncSession(engine) as session:
            statement = select(UsageEvent).filter_by(**where).order_by(UsageEvent.created_at)
            return list(await session.scalars(statement))
    finally:
        await engine.dispose()


async def wait_for_rows(
    database_url: str, count: int, within: float = 20.0, **where: object
) -> list[UsageEvent]:
    """The rows once there are `count` of them (the ledger writes every second)."""
    deadline = time.monotonic() + within
    engine = create_async_engine(database_url)
    try:
        while True:
            async with AsyncSession(engine) as session:
                found = await session.scalar(
                    select(func.count()).select_from(UsageEvent).filter_by(**where)
                )
            if (found is not None and found >= count) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()
    return await ledger_rows(database_url, **where)


# What `GET /limits/...` answers for a subject with nothing set.
NO_LIMITS = {
    "requests_per_minute": None,
    "tokens_per_minute": None,
    "max_concurrent": None,
    "max_budget_usd": None,
    "soft_budget_usd": None,
    "budget_period": "none",
}
