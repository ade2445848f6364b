"""Running the Alembic migrations: the only way the schema changes (workers never migrate)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

_PACKAGE_DIR = Path(__file__).resolve().parent.parent


def migrations_dir() -> Path:
    # A built wheel carries the scripts inside the package; a source checkout (editable
    # install, tests) has them beside the package, in service/migrations.
    for candidate in (_PACKAGE_DIR / "_migrations", _PACKAGE_DIR.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError("the Alembic migrations are missing from this installation")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["database_url"] = database_url
    return config


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config(""))


def upgrade(database_url: str, revision: str = "head") -> None:
    """Apply migrations up to `revision`; safe to run from several processes at once."""
    command.upgrade(alembic_config(database_url), revision)


async def applied_revisions(connection: AsyncConnection) -> frozenset[str]:
    """The database's Alembic revisions; empty for a database that was never migrated."""
    # A savepoint, so a missing version table does not abort the caller's transaction on
    # PostgreSQL.
    try:
        async with connection.begin_nested():
            result = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return frozenset(str(row[0]) for row in result)
    except DBAPIError:
        return frozenset()
