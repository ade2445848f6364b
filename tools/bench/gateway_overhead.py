"""Benchmark: what the gateway adds on top of its upstream (`make bench`; not a test).

Starts the loopback stub upstream and the service under gunicorn with one worker, then
measures sequential latency (p50/p99) straight to the stub and through the service, for
JSON and streaming, and throughput at 32 connections both ways with `wrk`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.ports import free_port

KEY = "sk-bench-" + "0" * 40
BODY = {"model": "bench", "messages": [{"role": "user", "content": "Say hello"}]}
REPO = Path(__file__).resolve().parents[2]


@contextmanager
def process(argv: list[str], env: dict[str, str], ready_url: str) -> Iterator[None]:
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(ready_url, timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError(f"{argv} did not start")
            time.sleep(0.1)
        yield
    finally:
        child.terminate()
        child.wait(timeout=30)


def latencies(url: str, headers: dict[str, str], body: Mapping[str, object], n: int) -> list[float]:
    samples = []
    with httpx.Client(headers=headers, timeout=10) as client:
        for i in range(n + n // 10):
            started = time.perf_counter()
            response = client.post(url, json=body)
            response.read()
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")
            if i >= n // 10:  # the first tenth warms up connections and caches
                samples.append(elapsed)
    return samples


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=1000)[int(q * 10) - 1] * 1000


def wrk(url: str, headers: dict[str, str], body: Mapping[str, object], seconds: int) -> float:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    script.write_text("\n".join(lines) + "\n")
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    script.unlink()
    if "Non-2xx" in out:
        raise RuntimeError("wrk saw errors:\n" + out)
    return float(
        next(line for line in out.splitlines() if line.startswith("Requests/sec")).split()[1]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: install it (apt-get install wrk, brew install wrk)")

    stub_port, service_port, bare_port = free_port(), free_port(), free_port()
    stub = f"http://127.0.0.1:{stub_port}/v1"
    workdir = Path(tempfile.mkdtemp(prefix="chatservice-bench-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CHATSERVICE_HOST": "127.0.0.1",
        "CHATSERVICE_PORT": str(service_port),
        "CHATSERVICE_WORKERS": "1",
        # No worker recycling mid-run: a restart would measure start-up, not requests (the
        # bare passthrough is not recycled either).
        "CHATSERVICE_MAX_REQUESTS": "0",
        "CHATSERVICE_LOG_LEVEL": "WARNING",
        "CHATSERVICE_ADMIN_API_KEY": KEY,
        "CHATSERVICE_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        "CHATSERVICE_MODELS": json.dumps(
            [{"name": "bench", "backend": "openai", "base_url": stub, "upstream_model": "stub"}]
        ),
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
    }
    subprocess.run([sys.executable, "-m", "chatservice.cli", "migrate"], env=env, check=True)
    service = f"http://127.0.0.1:{service_port}/api/v1"
    auth = {"Authorization": f"Bearer {KEY}"}
    stub_cmd = [sys.executable, "-m", "tests.service.stub_upstream", "--port", str(stub_port)]
    service_cmd = [sys.executable, "-m", "chatservice.cli", "run"]
    bare_cmd = [sys.executable, "-m", "gunicorn", "-w", "1", "-k", "uvicorn_worker.UvicornWorker",
                "-b", f"127.0.0.1:{bare_port}", "--no-control-socket",
                "tools.bench.bare_passthrough:app"]  # fmt: skip
    bare = f"http://127.0.0.1:{bare_port}/v1"
    results: dict[str, float] = {}
    with (
        process(stub_cmd, env, f"{stub}/models"),
        process(service_cmd, env, f"{service}/health/live"),
        process(bare_cmd, {**env, "BARE_UPSTREAM": stub}, f"{bare}/models"),
    ):
        for mode, body in (("json", BODY), ("stream", {**BODY, "stream": True})):
            direct = latencies(f"{stub}/chat/completions", {}, body, args.requests)
            through = latencies(f"{service}/chat/completions", auth, body, args.requests)
            for name, samples in (("direct", direct), ("service", through)):
                results[f"{mode}_{name}_p50_ms"] = percentile(samples, 50)
                results[f"{mode}_{name}_p99_ms"] = percentile(samples, 99)
            for q in ("p50", "p99"):
                results[f"{mode}_added_{q}_ms"] = (
                    results[f"{mode}_service_{q}_ms"] - results[f"{mode}_direct_{q}_ms"]
                )
        results["direct_rps"] = wrk(f"{stub}/chat/completions", {}, BODY, args.seconds)
        results["service_rps"] = wrk(f"{service}/chat/completions", auth, BODY, args.seconds)
        results["bare_passthrough_rps"] = wrk(f"{bare}/chat/completions", {}, BODY, args.seconds)
    results["throughput_ratio"] = results["service_rps"] / results["direct_rps"]
    results["bare_ratio"] = results["bare_passthrough_rps"] / results["direct_rps"]
    shutil.rmtree(workdir, ignore_errors=True)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
          f"Python {platform.python_version()}")  # fmt: skip
    for mode in ("json", "stream"):
        print(
            f"{mode:6} direct p50 {results[f'{mode}_direct_p50_ms']:.2f} ms "
            f"p99 {results[f'{mode}_direct_p99_ms']:.2f} ms | through service "
            f"p50 {results[f'{mode}_service_p50_ms']:.2f} ms "
            f"p99 {results[f'{mode}_service_p99_ms']:.2f} ms | added "
            f"p50 {results[f'{mode}_added_p50_ms']:.2f} ms "
            f"p99 {results[f'{mode}_added_p99_ms']:.2f} ms"
        )
    print(
        f"throughput at 32 connections: direct {results['direct_rps']:.0f} req/s, "
        f"through service {results['service_rps']:.0f} req/s "
        f"({results['throughput_ratio']:.0%} of direct); a bare FastAPI + aiohttp passthrough "
        f"{results['bare_passthrough_rps']:.0f} req/s ({results['bare_ratio']:.0%} of direct)"
    )
    print(json.dumps({k: round(v, 4) for k, v in results.items()}))


if __name__ == "__main__":
    main()
