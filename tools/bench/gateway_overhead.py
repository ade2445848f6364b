"""Benchmark: what the gateway adds on top of its upstream (`make bench`; not a test).

One run compares, interleaved round by round so that the machine's noise falls on all alike:
straight to the stub upstream (`direct`), a bare FastAPI + aiohttp passthrough (`bare`) and
ChatService (`service`), each under gunicorn with 1 and with 2 workers, for JSON and for
streams (20 content chunks, a finish and a usage chunk). It reports sequential latency p50/p99
and time to first token (added over direct), throughput at 32 and 128 connections (`wrk`), CPU
per request from the server processes' own CPU time, RSS per worker at idle and after
`--memory-requests` requests, and the service's cold start to ready. Medians over the rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.ports import free_port

KEY = "sk-bench-" + "0" * 40
BODY: dict[str, object] = {"model": "bench", "messages": [{"role": "user", "content": "Say hello"}]}
STREAM_BODY = {**BODY, "stream": True, "stream_options": {"include_usage": True}}
REPO = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The stub's first content token: its arrival is the time to first token.
FIRST_TOKEN = b"tok0"
MODES: dict[str, dict[str, object]] = {"json": BODY, "stream": STREAM_BODY}


def bench_env(database_url: str) -> dict[str, str]:
    """The environment every benchmarked ChatService starts with."""
    return {
        **os.environ,
        # Kept after the repository: PYTHONPATH=<another checkout>/service benchmarks that code.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "CHATSERVICE_HOST": "127.0.0.1",
        # No worker recycling mid-run: a restart would measure start-up, not requests (the
        # bare passthrough is not recycled either).
        "CHATSERVICE_MAX_REQUESTS": "0",
        # The default log level: the access line per request is part of what a request costs.
        "CHATSERVICE_LOG_LEVEL": "INFO",
        "CHATSERVICE_ADMIN_API_KEY": KEY,
        "CHATSERVICE_DATABASE_URL": database_url,
    }


def stub_models(stub_url: str) -> str:
    """`CHATSERVICE_MODELS` for one model, `bench`, served by the stub at `stub_url`."""
    route = {"name": "bench", "backend": "openai", "base_url": stub_url, "upstream_model": "stub"}
    return json.dumps([route])


@dataclass
class Server:
    name: str
    url: str  # up to /chat/completions
    headers: dict[str, str]
    master: subprocess.Popen[bytes]
    started: float
    ready_after: float = 0.0
    port: int = 0

    def workers(self) -> list[int]:
        """The processes that serve: gunicorn's workers, or the stub itself."""
        children = _children(self.master.pid)
        return children or [self.master.pid]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except OSError:
        return []


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@contextmanager
def serve(
    name: str, argv: list[str], env: dict[str, str], port: int, path: str, headers: dict[str, str]
) -> Iterator[Server]:
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Server(name, f"http://127.0.0.1:{port}{path}", headers, child, started, port=port)
    ready = f"http://127.0.0.1:{port}" + (
        "/api/v1/health/ready" if name == "service" else "/v1/models"
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(ready, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or child.poll() is not None:
                raise RuntimeError(f"{name} ({argv}) did not start")
            time.sleep(0.02)
        server.ready_after = time.perf_counter() - started
        yield server
    finally:
        child.terminate()
        child.wait(timeout=30)


def serve_stub(env: dict[str, str], port: int) -> AbstractContextManager[Server]:
    """The raw-asyncio stub upstream (`direct`)."""
    argv = [sys.executable, "-m", "tools.bench.raw_stub", "--port", str(port)]
    return serve("direct", argv, env, port, "/v1/chat/completions", {})


class RawClient:
    """One keep-alive HTTP/1.1 connection on a plain socket: the least client-side noise
    between the stamps, and the time the first content token arrives."""

    def __init__(self, server: Server, body: dict[str, object]) -> None:
        payload = json.dumps(body).encode()
        head = [
            f"POST {server.url.split(str(server.port), 1)[1]} HTTP/1.1",
            f"Host: 127.0.0.1:{server.port}",
            "Content-Type: application/json",
            f"Content-Length: {len(payload)}",
        ]
        head += [f"{k}: {v}" for k, v in server.headers.items()]
        self.request = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        self.sock.close()

    def exchange(self) -> tuple[float, float]:
        """(time to the first token, time to the last byte), in seconds."""
        started = time.perf_counter()
        self.sock.sendall(self.request)
        buffer = b""
        first = 0.0
        body_start = -1
        length: int | None = None
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise RuntimeError("the server closed the connection")
            buffer += data
            now = time.perf_counter()
            if not first and FIRST_TOKEN in buffer:
                first = now - started
            if body_start < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    continue
                head = buffer[:end].lower()
                if not head.startswith(b"http/1.1 200"):
                    raise RuntimeError(f"{buffer[:300]!r}")
                body_start = end + 4
                match = re.search(rb"content-length: *(\d+)", head)
                length = int(match.group(1)) if match else None
            if length is not None and len(buffer) - body_start >= length:
                return first, now - started
            if length is None and buffer.endswith(b"\r\n0\r\n\r\n"):
                return first, now - started


def sequential(server: Server, body: dict[str, object], n: int) -> tuple[list[float], list[float]]:
    client = RawClient(server, body)
    firsts, lasts = [], []
    try:
        for i in range(n + n // 10):
            first, last = client.exchange()
            if i >= n // 10:  # the first tenth warms up connections and caches
                firsts.append(first)
                lasts.append(last)
    finally:
        client.close()
    return firsts, lasts


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1] * 1000


@dataclass
class Load:
    rps: float
    requests: int
    cpu_ms_per_request: float
    p99_ms: float


def drain_ledger(server: Server, limit: float = 60.0) -> float:
    """Seconds until a service's ledger has written the rows of the run that just ended: left
    to itself it would write them during the next system's run, on the same cores."""
    if server.name != "service":
        return 0.0
    started = time.monotonic()
    while time.monotonic() - started < limit:
        exposition = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
        queued = sum(
            float(line.rsplit(" ", 1)[1])
            for line in exposition.splitlines()
            if line.startswith("chatservice_ledger_queued_events")
        )
        if queued == 0:
            break
        time.sleep(0.05)
    return time.monotonic() - started


def wrk(server: Server, body: dict[str, object], connections: int, seconds: int) -> Load:
    fd, name = tempfile.mkstemp(suffix=".lua")
    os.close(fd)
    script = Path(name)
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(json.dumps(body))}"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in server.headers.items()]
    lines.append('wrk.headers["Content-Type"] = "application/json"')
    script.write_text("\n".join(lines) + "\n")
    pids = server.workers()
    cpu_before = cpu_seconds(pids)
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            # Past wrk's default 2 s a slow answer is an error; a tail is measured instead.
            "--timeout",
            "10s",
            "--latency",
            "-s",
            str(script),
            server.url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    cpu = cpu_seconds(pids) - cpu_before
    script.unlink()
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors against {server.name}:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    return Load(rps, requests, cpu * 1000 / max(requests, 1), p99_ms)


@dataclass
class Results:
    samples: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def add(self, key: str, value: float) -> None:
        self.samples[key].append(value)

    def median(self, key: str) -> float:
        values = self.samples.get(key)
        return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="sequential, per round")
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--connections", default="32,128")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--memory-requests", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="also write the medians here")
    parser.add_argument(
        "--compare",
        type=Path,
        help="another checkout: its service runs too (as `compare`), interleaved with this one",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: install it (apt-get install wrk, brew install wrk)")
    connections = [int(c) for c in args.connections.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="chatservice-bench-"))
    stub_port = free_port()
    stub_url = f"http://127.0.0.1:{stub_port}/v1"
    env = {
        **bench_env(f"sqlite+aiosqlite:///{workdir / 'bench.db'}"),
        "CHATSERVICE_MODELS": stub_models(stub_url),
    }
    auth = {"Authorization": f"Bearer {KEY}"}
    results = Results()
    memory: dict[str, float] = {}

    with ExitStack() as stack:
        stub = stack.enter_context(serve_stub(env, stub_port))
        systems: dict[str, Server] = {"direct": stub}
        for workers in worker_counts:
            port = free_port()
            service_env = {
                **env,
                **_database(workdir / f"service-{workers}.db"),
                "CHATSERVICE_PORT": str(port),
                "CHATSERVICE_WORKERS": str(workers),
                "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"metrics-{workers}"),
            }
            systems[f"service/{workers}w"] = stack.enter_context(
                serve(
                    "service",
                    [sys.executable, "-m", "chatservice.cli", "run"],
                    service_env,
                    port,
                    "/api/v1/chat/completions",
                    auth,
                )
            )
            if args.compare:
                port = free_port()
                code = str(args.compare.resolve() / "service")
                systems[f"compare/{workers}w"] = stack.enter_context(
                    serve(
                        "service",
                        [sys.executable, "-m", "chatservice.cli", "run"],
                        {
                            **service_env,
                            **_database(workdir / f"compare-{workers}.db"),
                            "CHATSERVICE_PORT": str(port),
                            "PYTHONPATH": os.pathsep.join([code, service_env["PYTHONPATH"]]),
                            "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"compare-{workers}"),
                        },
                        port,
                        "/api/v1/chat/completions",
                        auth,
                    )
                )
            port = free_port()
            systems[f"bare/{workers}w"] = stack.enter_context(
                serve(
                    "bare",
                    [
                        sys.executable,
                        "-m",
                        "gunicorn",
                        "-w",
                        str(workers),
                        "-k",
                        "uvicorn_worker.UvicornWorker",
                        "-b",
                        f"127.0.0.1:{port}",
                        "--no-control-socket",
                        "tools.bench.bare_passthrough:app",
                    ],
                    {**env, "BARE_UPSTREAM": stub_url},
                    port,
                    "/v1/chat/completions",
                    {},
                )
            )
        one = worker_counts[0]
        service_one = systems[f"service/{one}w"]
        memory["cold_start_s"] = service_one.ready_after
        memory["idle_rss_mb"] = statistics.mean(rss_mb(p) for p in service_one.workers())
        memory["bare_idle_rss_mb"] = statistics.mean(
            rss_mb(p) for p in systems[f"bare/{one}w"].workers()
        )
        sequential_systems = [
            name for name in systems if name == "direct" or name.endswith(f"/{one}w")
        ]
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr)
            for mode, body in MODES.items():
                for name in sequential_systems:
                    firsts, lasts = sequential(systems[name], body, args.requests)
                    results.add(f"{mode} {name} p50", percentile(lasts, 50))
                    results.add(f"{mode} {name} p99", percentile(lasts, 99))
                    if mode == "stream":
                        results.add(f"{mode} {name} ttft p50", percentile(firsts, 50))
                for c in connections:
                    for name, server in systems.items():
                        load = wrk(server, body, c, args.seconds)
                        results.add(f"{mode} {name} c{c} rps", load.rps)
                        results.add(f"{mode} {name} c{c} cpu", load.cpu_ms_per_request)
                        results.add(f"{mode} {name} c{c} wrk p99", load.p99_ms)
                        results.add(f"{mode} {name} c{c} drain", drain_ledger(server))
        if args.memory_requests:
            print(f"memory: {args.memory_requests} requests", file=sys.stderr)
            done = 0
            while done < args.memory_requests:
                for body in MODES.values():
                    done += wrk(service_one, body, 32, args.seconds).requests
            memory["requests_served"] = done
            memory["after_rss_mb"] = statistics.mean(rss_mb(p) for p in service_one.workers())

    shutil.rmtree(workdir, ignore_errors=True)
    report(results, memory, args, connections, worker_counts, list(systems))


def _database(path: Path) -> dict[str, str]:
    """A migrated SQLite database of one service's own: services sharing one file would
    wait on each other's ledger writes."""
    env = {**os.environ, "CHATSERVICE_DATABASE_URL": f"sqlite+aiosqlite:///{path}"}
    subprocess.run([sys.executable, "-m", "chatservice.cli", "migrate"], env=env, check=True)
    return {"CHATSERVICE_DATABASE_URL": env["CHATSERVICE_DATABASE_URL"]}


def report(
    results: Results,
    memory: dict[str, float],
    args: argparse.Namespace,
    connections: list[int],
    worker_counts: list[int],
    names: list[str],
) -> None:
    med = results.median
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} at the end; "
        f"medians of {args.rounds} interleaved rounds"
    )
    one = worker_counts[0]
    print(f"\nsequential, {one} worker, {args.requests} requests a round (added = minus direct):")
    for mode in MODES:
        for name in (n for n in names if n == "direct" or n.endswith(f"/{one}w")):
            p50, p99 = med(f"{mode} {name} p50"), med(f"{mode} {name} p99")
            line = f"  {mode:6} {name:10} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
            if name != "direct":
                line += f"  added p50 {p50 - med(f'{mode} direct p50'):5.2f} ms"
            if mode == "stream":
                ttft = med(f"{mode} {name} ttft p50")
                line += f"  TTFT p50 {ttft:5.2f} ms"
                if name != "direct":
                    line += f" (added {ttft - med(f'{mode} direct ttft p50'):5.2f})"
            print(line)
    print("\nthroughput (req/s), CPU per request (ms, server processes), wrk p99 (ms):")
    for mode in MODES:
        for c in connections:
            for name in names:
                print(
                    f"  {mode:6} c={c:<4} {name:10} {med(f'{mode} {name} c{c} rps'):8.0f} req/s"
                    f"  cpu {med(f'{mode} {name} c{c} cpu'):5.2f} ms"
                    f"  p99 {med(f'{mode} {name} c{c} wrk p99'):7.2f} ms"
                    + (
                        f"  ledger done {drain:4.1f} s later"
                        if (drain := med(f"{mode} {name} c{c} drain")) > 0
                        else ""
                    )
                )
    print("\nChatService against the bare passthrough (same run):")
    for mode in MODES:
        for w in worker_counts:
            for c in connections:
                for system in ("service", "compare") if args.compare else ("service",):
                    s, b = f"{mode} {system}/{w}w c{c}", f"{mode} bare/{w}w c{c}"
                    throughput = med(s + " rps") / med(b + " rps")
                    print(
                        f"  {mode:6} {system:7} {w}w c={c:<4} throughput {throughput:.2f}x"
                        f"  CPU per request {med(s + ' cpu') / med(b + ' cpu'):.2f}x"
                    )
    print("\nmemory and start:")
    print(f"  cold start to ready ({one} worker): {memory['cold_start_s']:.2f} s")
    print(
        f"  RSS per worker idle: service {memory['idle_rss_mb']:.0f} MB, "
        f"bare {memory['bare_idle_rss_mb']:.0f} MB"
    )
    if "after_rss_mb" in memory:
        print(
            f"  RSS per worker after {memory['requests_served']:.0f} more requests: "
            f"{memory['after_rss_mb']:.0f} MB"
        )
    medians = {key: round(med(key), 4) for key in results.samples}
    summary = {"medians": medians, "memory": memory}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
