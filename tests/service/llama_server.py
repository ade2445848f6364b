"""llama-cpp-python's OpenAI-compatible server, a real third-party upstream, as a subprocess
on a free loopback port serving the tiny random-weight model of `tiny_gguf`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port

MODEL_ALIAS = "tiny-llama"
START_TIMEOUT = 60.0


def require_llama_cpp() -> None:
    """Skip where llama-cpp-python is not installed, but never in CI, where it must run."""
    try:
        import llama_cpp.server  # noqa: F401 - only to learn whether it is there
    except ImportError as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"llama-cpp-python[server] is required in CI: {exc}", pytrace=False)
        pytest.skip(f"llama-cpp-python[server] is not installed: {exc}")


class LlamaServer:
    def __init__(self, model: Path, log: Path, api_key: str | None = None) -> None:
        self.model = model
        self.log = log
        self.api_key = api_key
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(self.model),
            "--model_alias", MODEL_ALIAS, "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", "2048", "--n_threads", "1",
            # The handler that turns `tools` into grammar-constrained tool calls.
            "--chat_format", "chatml-function-calling",
        ]  # fmt: skip
        if self.api_key:
            command += ["--api_key", self.api_key]
        with open(self.log, "ab") as output:
            self.process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("llama.cpp server exited:\n" + self.log.read_text())
            try:
                if httpx.get(self.base_url + "/models", headers=headers, timeout=1).is_success:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("llama.cpp server did not start:\n" + self.log.read_text())

    def kill(self) -> None:
        """As a crash would: no chance to finish what it was sending."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
