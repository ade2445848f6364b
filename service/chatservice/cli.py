"""The `chatservice` command: `run` (gunicorn), `migrate`, `create-user` and `create-key`."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from chatservice.config import DEVELOPMENT_ADMIN_KEY, Environment, Settings


class DatabaseNotReady(Exception):
    """The database cannot be used yet; the message is one line a person can act on."""


class RefusedInput(Exception):
    """An argument or the password was refused; the message says why, in one line."""


def _read_password() -> str:
    # Never an argument: arguments show in `ps` and in shell history.
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise RefusedInput("the passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    from chatservice.users.passwords import password_problem

    problem = password_problem(password)
    if problem is not None:
        raise RefusedInput(f"password refused: it {problem}")
    return password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chatservice", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="serve under gunicorn with uvicorn workers")
    commands.add_parser("migrate", help="apply the database migrations (safe to run concurrently)")
    create = commands.add_parser("create-key", help="store a new API key and print it once")
    create.add_argument("--name", default="cli")
    create.add_argument("--user", help="the owner's email (the key has the owner's rights)")
    create.add_argument("--admin", action="store_true", help="an admin key, whoever owns it")
    user = commands.add_parser(
        "create-user",
        help="store a user; the password comes from a prompt, or standard input's first line",
    )
    user.add_argument("--email", required=True)
    user.add_argument("--admin", action="store_true")
    args = parser.parse_args(argv)

    try:
        settings = Settings()
    except ValidationError as exc:
        # Without the input values: they may hold secrets.
        for error in exc.errors(include_input=False, include_url=False):
            field = "".join(f"{part}: " for part in error["loc"][:1])
            message = error["msg"].removeprefix("Value error, ")
            print(f"chatservice: invalid configuration: {field}{message}", file=sys.stderr)
        return 2

    try:
        if args.command == "migrate":
            _migrate(settings)
            return 0
        if args.command == "create-key":
            print(asyncio.run(_create_key(settings, args.name, args.admin, args.user)))
            return 0
        if args.command == "create-user":
            password = _read_password()
            print(asyncio.run(_create_user(settings, args.email, password, args.admin)))
            return 0
    except (DatabaseNotReady, RefusedInput) as exc:
        print(f"chatservice: {exc}", file=sys.stderr)
        return 1
    return _run(settings)


def _migrate(settings: Settings) -> None:
    from chatservice.db.migrate import upgrade

    try:
        upgrade(settings.database_url)
    except (OSError, DBAPIError) as exc:
        raise DatabaseNotReady(_unreachable(settings, exc)) from exc
    print("chatservice: database migrated to head", file=sys.stderr)


def _run(settings: Settings) -> int:
    from chatservice.chat.usage import TokenizerLoadError, load_token_counters

    try:
        # Each worker loads them again; a bad file is reported here once, not per worker.
        load_token_counters(settings.models)
    except TokenizerLoadError as exc:
        print(f"chatservice: invalid configuration: models: {exc}", file=sys.stderr)
        return 2
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="chatservice-metrics-")
    if settings.environment is Environment.DEVELOPMENT:
        key = settings.admin_api_key.get_secret_value()
        shown = key if key == DEVELOPMENT_ADMIN_KEY else key[:6] + "…"
        base = f"http://{settings.host}:{settings.port}/api/v1"
        print(
            f"\n  ChatService on {base}  (development mode)\n"
            f"  API key: {shown}\n"
            f"  Models:  {', '.join(settings.routes)}\n"
            f"  Try:     curl -H 'Authorization: Bearer {shown}' {base}/models\n",
            file=sys.stderr,
            flush=True,
        )
    argv = [
        sys.executable, "-m", "gunicorn",
        "--config", "python:chatservice.gunicorn_conf",
        "chatservice.main:create_app()",
    ]  # fmt: skip
    os.execv(sys.executable, argv)  # noqa: S606 - replaces this process with gunicorn


async def _create_key(settings: Settings, name: str, admin: bool, owner: str | None) -> str:
    from sqlalchemy import select

    from chatservice.keys.service import create_key
    from chatservice.users.tables import User

    async def work(session: AsyncSession) -> str:
        user_id = None
        if owner is not None:
            user_id = await session.scalar(select(User.id).where(User.email == owner.lower()))
            if user_id is None:
                raise RefusedInput(f"no user with the email {owner}: create-user first")
        plaintext, _ = await create_key(session, name=name, is_admin=admin, user_id=user_id)
        return plaintext

    return await _in_migrated_database(settings, work)


async def _create_user(settings: Settings, email: str, password: str, admin: bool) -> str:
    from sqlalchemy import select

    from chatservice.users.emails import normalise_email
    from chatservice.users.passwords import hash_password_sync
    from chatservice.users.tables import Role, User

    try:
        email = normalise_email(email)
    except ValueError as exc:
        raise RefusedInput(f"--email {exc}") from None

    async def work(session: AsyncSession) -> str:
        if await session.scalar(select(User.id).where(User.email == email)) is not None:
            raise RefusedInput(f"a user with the email {email} already exists")
        user = User(
            email=email,
            password_hash=hash_password_sync(password),
            role=(Role.ADMIN if admin else Role.MEMBER).value,
        )
        session.add(user)
        await session.flush()
        return str(user.id)

    return await _in_migrated_database(settings, work)


async def _in_migrated_database(
    settings: Settings, work: Callable[[AsyncSession], Awaitable[str]]
) -> str:
    from chatservice.db.engine import create_engine, create_sessionmaker
    from chatservice.db.migrate import applied_revisions, script_directory
    from chatservice.db.schema_history import SchemaHistory, SchemaStatus

    sqlite_file = _sqlite_file(settings)
    if sqlite_file is not None and not sqlite_file.exists():
        # SQLite would create an empty file here, far from the one `make run` uses.
        raise DatabaseNotReady(
            f"no database at {sqlite_file}: run `chatservice migrate` (or `make migrate`) "
            "first, or set CHATSERVICE_DATABASE_URL"
        )
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            revisions = await applied_revisions(connection)
        if SchemaHistory.load(script_directory()).status(revisions) is SchemaStatus.BEHIND:
            raise DatabaseNotReady(
                f"the database at {_shown(settings)} is not migrated: run `chatservice migrate` "
                "(or `make migrate`) first"
            )
        async with create_sessionmaker(engine)() as session, session.begin():
            return await work(session)
    except (OSError, DBAPIError) as exc:
        raise DatabaseNotReady(_unreachable(settings, exc)) from exc
    finally:
        await engine.dispose()


def _sqlite_file(settings: Settings) -> Path | None:
    database = make_url(settings.database_url).database
    if not settings.is_sqlite or not database or database == ":memory:":
        return None
    return Path(database).resolve()


def _shown(settings: Settings) -> str:
    return make_url(settings.database_url).render_as_string(hide_password=True)


def _unreachable(settings: Settings, exc: BaseException) -> str:
    # The driver's own first line says what failed (refused, unknown database, bad password)
    # without the statement or parameters SQLAlchemy appends.
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    reason = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
    return f"cannot use the database at {_shown(settings)}: {reason}"


if __name__ == "__main__":
    sys.exit(main())
