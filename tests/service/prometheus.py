"""A real Prometheus server (Debian's `prometheus` package) on a loopback port, for tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ports import free_port


def require(tool: str) -> str:
    """The path of `prometheus` or `promtool`: a skip without it, a failure in CI."""
    path = shutil.which(tool)
    if path is None:
        reason = f"no `{tool}` on PATH (Debian's `prometheus` package; .ci/run installs it)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"{tool} is required in CI: {reason}", pytrace=False)
        pytest.skip(reason)
    return path


@dataclass
class Prometheus:
    url: str
    log: Path

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        response = httpx.get(self.url + "/api/v1/query", params=params, timeout=5)
        body: dict[str, Any] = response.json()
        assert body["status"] == "success", f"{expr}: {body}"
        data: dict[str, Any] = body["data"]
        return data

    def value(self, expr: str, at: float | None = None) -> float | None:
        """The one value of an instant query, None when it has no result."""
        result = self.query(expr, at)["result"]
        if not result:
            return None
        assert len(result) == 1, f"{expr} gave several series: {result}"
        return float(result[0]["value"][1])

    def samples(self, selector: str) -> list[tuple[float, float]]:
        """The raw (timestamp, value) samples of one series over the last 10 minutes."""
        result = self.query(f"{selector}[10m]")["result"]
        assert len(result) == 1, f"{selector} selects {len(result)} series"
        return [(float(t), float(v)) for t, v in result[0]["values"]]

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus never saw {what}:\n{self.log.read_text()}")
            time.sleep(0.2)


@contextmanager
def prometheus_server(
    targets: dict[str, str],
    directory: Path,
    flags: Sequence[str] = (),
    file_targets: Path | None = None,
) -> Iterator[Prometheus]:
    """Prometheus scraping each job's `host:port`/metrics every second, stopped on exit;
    `flags` are added to its command line (e.g. `--enable-feature=exemplar-storage`).
    `file_targets` adds a job `files` whose targets (and their labels) Prometheus reads from that
    JSON file whenever it changes, as it would follow pods through Kubernetes discovery."""
    binary = require("prometheus")
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs: [{{targets: ['{target}']}}]\n"
        for job, target in targets.items()
    )
    if file_targets is not None:
        jobs += f"  - job_name: files\n    file_sd_configs: [{{files: ['{file_targets}']}}]\n"
    config = directory / "prometheus.yml"
    config.write_text(
        f"global: {{scrape_interval: 1s, scrape_timeout: 900ms}}\nscrape_configs:\n{jobs}"
    )
    port = free_port()
    log = directory / "prometheus.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                *flags,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", log)
    try:
        server.wait_for("itself ready", lambda: _ready(server, process))
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _ready(server: Prometheus, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise RuntimeError("prometheus exited:\n" + server.log.read_text())
    try:
        return httpx.get(server.url + "/-/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
