"""The embedded default: SQLite through the real session dependency (commit on success)."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from chatservice.main import create_app
from tests.service.harness import AUTH, make_settings, serve
from tests.service.test_migrate import migrate_env


async def test_sqlite_serves_chat_health_and_stored_keys(sqlite_url: str) -> None:
    created = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "chatservice.cli", "create-key", "--name", "laptop"],
        env=migrate_env(sqlite_url), capture_output=True, text=True, check=True,
    )  # fmt: skip
    key = created.stdout.strip()
    async with serve(create_app(make_settings(sqlite_url))) as http:
        assert (await http.get("/api/v1/health/ready")).status_code == 200
        report = (await http.get("/api/v1/health/")).json()
        assert report["schema"]["state"] == "current"
        response = await http.post(
            "/api/v1/chat/completions",
            headers={"Authorization": f"Bearer {key}"},
            json={"model": "echo", "messages": [{"role": "user", "content": "on sqlite"}]},
        )
        assert response.json()["choices"][0]["message"]["content"] == "on sqlite"
        models = await http.get("/api/v1/models", headers=AUTH)
        assert models.status_code == 200
