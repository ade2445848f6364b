"""`chatservice create-key` and `migrate` where the database is missing, unmigrated or
unreachable: one line that says what to do, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.ports import free_port

CREATE_KEY = [sys.executable, "-m", "chatservice.cli", "create-key", "--name", "newcomer"]
MIGRATE = [sys.executable, "-m", "chatservice.cli", "migrate"]


def run(command: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHATSERVICE_")}
    return subprocess.run(
        command, cwd=cwd, env={**clean, **env}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def assert_one_line_error(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]


def test_create_key_outside_the_repository_names_the_missing_database(tmp_path: Path) -> None:
    # The default database is ./var/chatservice.db, relative to where the command runs.
    result = run(CREATE_KEY, tmp_path)
    assert_one_line_error(result, f"no database at {tmp_path / 'var' / 'chatservice.db'}")
    assert "chatservice migrate" in result.stderr
    assert not (tmp_path / "var").exists(), "no empty database left behind"


def test_create_key_on_an_unmigrated_database_says_to_migrate(
    create_database: Callable[[], str], tmp_path: Path
) -> None:
    result = run(CREATE_KEY, tmp_path, CHATSERVICE_DATABASE_URL=create_database())
    assert_one_line_error(result, "is not migrated: run `chatservice migrate`")


def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://chat:hunter2-secret@127.0.0.1:{free_port()}/chat"
    for command in (CREATE_KEY, MIGRATE):
        result = run(command, tmp_path, CHATSERVICE_DATABASE_URL=url)
        assert_one_line_error(result, "cannot use the database at postgresql+asyncpg://chat:***@")
        assert "hunter2-secret" not in result.stderr


def test_migrate_then_create_key_prints_a_key(
    create_database: Callable[[], str], tmp_path: Path
) -> None:
    url = create_database()
    assert run(MIGRATE, tmp_path, CHATSERVICE_DATABASE_URL=url).returncode == 0
    result = run(CREATE_KEY, tmp_path, CHATSERVICE_DATABASE_URL=url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sk-")
