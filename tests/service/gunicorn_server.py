"""A real `chatservice run` (gunicorn with two workers) on a loopback port, for tests."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai

from tests.ports import free_port


@dataclass
class Gunicorn:
    url: str
    process: subprocess.Popen[bytes]
    metrics_dir: Path
    log: Path
    key: str

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def sdk(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.api, api_key=self.key, max_retries=0)

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return [int(pid) for pid in children.read_text().split()]


@contextmanager
def gunicorn_starter(database_url: str, directory: Path) -> Iterator[Callable[..., Gunicorn]]:
    """A `start(**env)` that launches servers, all stopped with SIGTERM on exit."""
    started: list[Gunicorn] = []

    def start(**env: str) -> Gunicorn:
        port = free_port()
        key = "sk-test-" + secrets.token_hex(20)
        metrics_dir = directory / f"metrics-{port}"
        log = directory / f"gunicorn-{port}.log"
        environment = {
            **os.environ,
            "CHATSERVICE_HOST": "127.0.0.1",
            "CHATSERVICE_PORT": str(port),
            "CHATSERVICE_WORKERS": "2",
            "CHATSERVICE_DATABASE_URL": database_url,
            "CHATSERVICE_ADMIN_API_KEY": key,
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            # The pod's rate-limit file: one per server, as each pod has its own.
            "CHATSERVICE_RATE_LIMIT_FILE": str(directory / f"rate-limits-{port}.sqlite"),
            **env,
        }
        with open(log, "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "chatservice.cli", "run"],
                env=environment,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = Gunicorn(f"http://127.0.0.1:{port}", process, metrics_dir, log, key)
        started.append(server)
        _wait_ready(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
                server.process.wait(timeout=30)


def _wait_ready(server: Gunicorn) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError("gunicorn exited:\n" + server.log.read_text())
        try:
            if httpx.get(server.api + "/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError("gunicorn did not become ready:\n" + server.log.read_text())


class BackgroundStream:
    """An echo stream read in a thread, so the test can signal the server while it runs."""

    def __init__(self, server: Gunicorn, words: str) -> None:
        self.received: list[str] = []  # each event's `data:` payload, in order
        self.failures: list[httpx.TransportError] = []
        self.first_event = threading.Event()
        self._server = server
        self._words = words
        self._thread = threading.Thread(target=self._read)
        self._thread.start()

    def _read(self) -> None:
        try:
            with httpx.stream(
                "POST", self._server.api + "/chat/completions",
                headers={"Authorization": f"Bearer {self._server.key}"},
                json={"model": "echo", "stream": True,
                      "messages": [{"role": "user", "content": self._words}]},
                timeout=30,
            ) as response:  # fmt: skip
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.received.append(line[len("data: ") :])
                        self.first_event.set()
        except httpx.TransportError as exc:  # what a client sees when the server cuts it
            self.failures.append(exc)

    def join(self, timeout: float = 30) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the stream did not end within {timeout} s"
