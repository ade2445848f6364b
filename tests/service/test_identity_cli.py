"""`chatservice create-user` (password from standard input, never an argument) and
`chatservice create-key --user`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from chatservice.main import create_app
from tests.service.harness import make_settings, serve
from tests.service.identity import API, JWT_SECRET, PASSWORD, bearer, login
from tests.service.test_cli import run

CLI = [sys.executable, "-m", "chatservice.cli"]


def create_user(
    url: str, cwd: Path, email: str, password: str, *flags: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "create-user", "--email", email, *flags],
        input=password + "\n", cwd=cwd, capture_output=True, text=True, timeout=60, check=False,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("CHATSERVICE_")},
             "CHATSERVICE_DATABASE_URL": url},
    )  # fmt: skip


async def test_create_user_then_a_key_for_them(sqlite_url: str, tmp_path: Path) -> None:
    made = create_user(sqlite_url, tmp_path, "Ops@Example.com", PASSWORD, "--admin")
    assert made.returncode == 0, made.stderr
    assert PASSWORD not in made.stdout + made.stderr
    again = create_user(sqlite_url, tmp_path, "ops@example.com", PASSWORD)
    assert again.returncode == 1
    assert "already exists" in again.stderr
    weak = create_user(sqlite_url, tmp_path, "dev@example.com", "short")
    assert weak.returncode == 1
    assert "password refused" in weak.stderr
    assert "Traceback" not in weak.stderr

    key = run([*CLI, "create-key", "--user", "ops@example.com"], tmp_path,
              CHATSERVICE_DATABASE_URL=sqlite_url)  # fmt: skip
    assert key.returncode == 0, key.stderr
    secret = key.stdout.strip()
    nobody = run([*CLI, "create-key", "--user", "nobody@example.com"], tmp_path,
                 CHATSERVICE_DATABASE_URL=sqlite_url)  # fmt: skip
    assert nobody.returncode == 1

    async with serve(create_app(make_settings(sqlite_url, jwt_secret=JWT_SECRET))) as http:
        me = await http.get(f"{API}/users/me", headers=bearer(secret))
        assert me.json()["email"] == "ops@example.com"
        assert me.json()["role"] == "admin"
        # The key has its owner's rights: an admin's.
        assert (await http.get(f"{API}/users", headers=bearer(secret))).status_code == 200
        assert (await login(http, "ops@example.com")).status_code == 200
