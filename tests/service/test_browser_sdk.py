"""The official OpenAI JS SDK in a real headless Chromium, from a page on an allowed origin,
against a real gunicorn: CORS preflights with its `x-stainless-*` headers, JSON, a stream, a
model list and an error it reads as the SDK's own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatservice.db.migrate import upgrade
from tests.ports import free_port
from tests.service.browser_page import SDK_DIR, PageServer
from tests.service.gunicorn_server import gunicorn_starter

INSTALL = "tools/install-browser-test-tools.sh"


def _missing(reason: str) -> None:
    # In CI a missing browser is a broken machine, not a reason to skip.
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI installs it with {INSTALL})", pytrace=False)
    pytest.skip(f"{reason}; install it with {INSTALL}")


@pytest.fixture
def chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        _missing("Debian's chromium is not installed")
    if not (SDK_DIR / "index.mjs").is_file():
        _missing("the openai npm package is not installed under tools/browser")
    assert binary is not None
    return binary


@pytest.fixture
def headless(chromium: str, tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        # Chromium forks helpers into the session it leads; end that session only.
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_the_openai_js_sdk_works_from_an_allowed_origin(
    chromium: str, headless: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'chatservice.db'}"
    upgrade(database)
    page_port = free_port()
    origin = f"http://127.0.0.1:{page_port}"
    with gunicorn_starter(database, tmp_path) as start:
        server = start(CHATSERVICE_CORS_ORIGINS=origin)
        with PageServer(page_port, server.api, server.key) as page:
            headless.append(
                subprocess.Popen(
                    [
                        chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--no-first-run", f"--user-data-dir={tmp_path / 'chromium'}",
                        page.origin + "/",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            )  # fmt: skip
            assert page.reported.wait(90), "the page reported nothing"
    result = page.result
    assert result is not None
    assert "failure" not in result, result.get("failure")
    assert result["completion"] == "hello from a browser"
    assert result["streamed"] == "streamed words"
    assert result["models"] == ["echo"]
    assert result["wrongKey"]["status"] == 401
    assert result["wrongKey"]["sdkError"] is True
    assert result["wrongKey"]["code"] == "invalid_api_key"
    # The SDK could read the exposed request id of the failed request.
    assert result["wrongKey"]["requestId"]
