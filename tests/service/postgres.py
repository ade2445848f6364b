"""A throwaway PostgreSQL server for the tests, started from the machine's server binaries."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

# Durability off: the data is thrown away, and the tests run several times faster.
_SERVER_OPTIONS = [
    "-c", "listen_addresses=127.0.0.1",
    "-c", "fsync=off",
    "-c", "synchronous_commit=off",
    "-c", "full_page_writes=off",
    "-c", "max_connections=200",
]  # fmt: skip


def find_bindir() -> Path | None:
    """The newest PostgreSQL server binaries: PATH first, then Debian's versioned folders."""
    on_path = shutil.which("initdb")
    if on_path:  # often a symlink into the versioned folder, which has the other tools
        return Path(on_path).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(candidates[-1]).parent if candidates else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """initdb into a temporary folder, run `postgres` on a loopback port, stop and delete it.

    PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user
    that Debian's package creates (or `nobody`).
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="chatservice-pg-"))
        self.datadir = self.root / "data"
        self.port = free_port()
        self.user = _unprivileged_user() if os.geteuid() == 0 else None
        self._process: subprocess.Popen[bytes] | None = None
        self._log = self.root / "postgres.log"
        if self.user is not None:
            os.chmod(self.root, 0o700)
            shutil.chown(self.root, self.user, self.user)
        self._run(
            "initdb", "-D", str(self.datadir), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--no-sync",
        )  # fmt: skip

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [str(self.bindir / tool), *args],
            check=True,
            capture_output=True,
            user=self.user,
            cwd=self.root,
        )

    def start(self) -> None:
        log = open(self._log, "ab")
        self._process = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.datadir),
                "-p",
                str(self.port),
                "-k",
                str(self.root),
                *_SERVER_OPTIONS,
            ],
            stdout=log,
            stderr=log,
            user=self.user,
            cwd=self.root,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError("postgres exited:\n" + self._log.read_text())
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    pass
                if self._accepts_queries():
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("postgres did not start:\n" + self._log.read_text())

    def _accepts_queries(self) -> bool:
        result = subprocess.run(
            [str(self.bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # "fast" shutdown: ends sessions now
            self._process.wait(timeout=30)
        self._process = None

    def signal_all(self, signum: int) -> None:
        """Signal the server and every process it forked (SIGSTOP freezes it whole)."""
        assert self._process is not None
        master = self._process.pid
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        for pid in [master, *map(int, children)]:
            os.kill(pid, signum)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres", driver: str = "asyncpg") -> str:
        return f"postgresql+{driver}://postgres@127.0.0.1:{self.port}/{database}"


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root, but no `postgres` or `nobody` user to run PostgreSQL as")
