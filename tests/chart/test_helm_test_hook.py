"""The `helm test` hook Pod: rendered as a test hook against the ChatService's Service, and its
check script (run here against a local HTTP server) fails unless /api/v1/health/ says "ok"."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from .rendering import NAMESPACE, Manifest, Rendered, render_values

HEALTH_URL = f"http://chatservice.{NAMESPACE}.svc:80/api/v1/health/"


class HealthHandler(BaseHTTPRequestHandler):
    reply: ClassVar[tuple[int, bytes]] = (200, b"{}")
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        HealthHandler.paths.append(self.path)
        code, body = HealthHandler.reply
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keeps the test output quiet."""


@pytest.fixture(scope="module")
def health_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), HealthHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/api/v1/health/"
    server.shutdown()
    thread.join()


@pytest.fixture(scope="module")
def hook_pod() -> Manifest:
    pods = render_values({}).of_kind("Pod")
    assert len(pods) == 1
    pod: Manifest = pods[0]
    return pod


def run_check(pod: Manifest, url: str) -> subprocess.CompletedProcess[str]:
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["python", "-c"]
    script = container["args"][0]
    assert HEALTH_URL in script, "the hook must call the installed ChatService's Service"
    return subprocess.run(
        [sys.executable, "-c", script.replace(HEALTH_URL, url)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_hook_pod_is_a_helm_test_that_cleans_up(hook_pod: Manifest) -> None:
    annotations = hook_pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert hook_pod["spec"]["restartPolicy"] == "Never"
    chatservice = render_values({}).one("ChatService")
    assert hook_pod["spec"]["containers"][0]["image"] == chatservice["spec"]["image"]


@pytest.mark.parametrize(
    ("code", "body", "passes"),
    [
        (200, {"status": "ok", "components": {}}, True),
        (503, {"status": "degraded"}, False),
        (200, {"status": "degraded"}, False),
        (500, {}, False),
    ],
)
def test_hook_passes_only_when_healthy(
    hook_pod: Manifest,
    health_server: str,
    code: int,
    body: Manifest,
    passes: bool,
) -> None:
    HealthHandler.reply = (code, json.dumps(body).encode())
    HealthHandler.paths.clear()
    result = run_check(hook_pod, health_server)
    assert (result.returncode == 0) is passes, result.stdout + result.stderr
    assert HealthHandler.paths == ["/api/v1/health/"]


def test_hook_fails_when_the_service_is_unreachable(hook_pod: Manifest) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    result = run_check(hook_pod, "http://127.0.0.1:9/api/v1/health/")
    assert result.returncode != 0


def test_no_hook_without_a_chatservice() -> None:
    rendered: Rendered = render_values({"chatService": {"create": False}})
    assert rendered.of_kind("Pod") == []
