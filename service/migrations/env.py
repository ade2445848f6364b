"""Alembic environment: async engines, and a PostgreSQL advisory lock around the upgrade so
that concurrent migrators (two Jobs, a Job and a developer) apply each revision once."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from chatservice.accounting import tables as _accounting_tables  # noqa: F401 - registers them
from chatservice.config import Settings
from chatservice.db.engine import Base
from chatservice.keys import tables as _keys_tables  # noqa: F401 - registers every table

# Any constant shared by every migrator; "chatserv" in ASCII.
MIGRATION_LOCK_ID = 0x6368617473657276

config = context.config
target_metadata = Base.metadata


def _database_url() -> str:
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    return str(url or Settings().database_url)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying
        compare_type=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Taken inside the migration transaction, before Alembic reads the current
            # revision: the second migrator waits, then finds nothing left to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


async def _run_online() -> None:
    engine = create_async_engine(_database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=_database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
