"""The `chatservice` command: `run` (gunicorn), `migrate`, and `create-key`."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile

from pydantic import ValidationError

from chatservice.config import DEVELOPMENT_ADMIN_KEY, Environment, Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chatservice", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run", help="serve under gunicorn with uvicorn workers")
    commands.add_parser("migrate", help="apply the database migrations (safe to run concurrently)")
    create = commands.add_parser("create-key", help="store a new API key and print it once")
    create.add_argument("--name", required=True)
    create.add_argument("--admin", action="store_true")
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

    if args.command == "migrate":
        from chatservice.migrations import upgrade

        upgrade(settings.database_url)
        print("chatservice: database migrated to head", file=sys.stderr)
        return 0
    if args.command == "create-key":
        plaintext = asyncio.run(_create_key(settings, args.name, args.admin))
        print(plaintext)
        return 0
    return _run(settings)


def _run(settings: Settings) -> int:
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="chatservice-metrics-")
    if settings.environment is Environment.DEVELOPMENT:
        key = settings.admin_api_key.get_secret_value()
        shown = key if key == DEVELOPMENT_ADMIN_KEY else key[:6] + "…"
        print(
            f"\n  ChatService on http://localhost:{settings.port}/api/v1  (development mode)\n"
            f"  API key: {shown}\n"
            f"  Models:  {', '.join(settings.routes)}\n"
            f"  Try:     curl -H 'Authorization: Bearer {shown}' "
            f"http://localhost:{settings.port}/api/v1/models\n",
            file=sys.stderr,
            flush=True,
        )
    argv = [
        sys.executable, "-m", "gunicorn",
        "--config", "python:chatservice.gunicorn_conf",
        "chatservice.main:create_app()",
    ]  # fmt: skip
    os.execv(sys.executable, argv)  # noqa: S606 - replaces this process with gunicorn


async def _create_key(settings: Settings, name: str, admin: bool) -> str:
    from chatservice.db import create_engine, create_sessionmaker
    from chatservice.keys.service import create_key

    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            plaintext, _ = await create_key(session, name=name, is_admin=admin)
    finally:
        await engine.dispose()
    return plaintext


if __name__ == "__main__":
    sys.exit(main())
