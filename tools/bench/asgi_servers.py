"""Trial: the same apps under gunicorn + uvicorn (what ships) and under granian (not a test).

Granian is not one of the project's dependencies: `pip install granian` first. Both servers
run one worker process with uvloop; the bare passthrough and ChatService (SQLite ledger,
bootstrap key, the same JSON log lines) are loaded with `wrk`, JSON and stream, in
interleaved rounds, and the CPU per request comes from the worker processes' own CPU time.

    python -m tools.bench.asgi_servers --rounds 3 --seconds 5

Under granian ChatService runs without what its gunicorn configuration adds: the bounded
request-head reads of its uvicorn protocol, the gc freeze, graceful draining, and the cleanup
of a dead worker's metrics files. It is a measurement, not a way to serve it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

from chatservice.observability.logs import logging_config
from tests.ports import free_port
from tools.bench.gateway_overhead import (
    KEY,
    MODES,
    Server,
    bench_env,
    serve,
    serve_stub,
    stub_models,
    wrk,
)


def _granian(target: str, port: int, *, factory: bool, log_config: Path) -> list[str]:
    argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--loop", "uvloop"]
    argv += ["--workers", "1", "--host", "127.0.0.1", "--port", str(port), "--no-ws"]
    argv += ["--log-config", str(log_config), "--no-access-log"]
    return [*argv, "--factory", target] if factory else [*argv, target]


def _gunicorn_bare(port: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "-w", "1", "-k", "uvicorn_worker.UvicornWorker",
        "-b", f"127.0.0.1:{port}", "--no-control-socket", "tools.bench.bare_passthrough:app",
    ]  # fmt: skip


def _log_config(workdir: Path) -> Path:
    """The service's own logging (one JSON line per request), for granian's dictConfig."""
    config = logging_config("INFO")
    config["formatters"]["json"]["()"] = "chatservice.observability.logs.JsonFormatter"
    config["filters"]["repeats"]["()"] = "chatservice.observability.log_sampling.RepeatFilter"
    path = workdir / "logging.json"
    path.write_text(json.dumps(config))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="chatservice-servers-"))
    stub_port = free_port()
    stub_url = f"http://127.0.0.1:{stub_port}/v1"
    env = {
        **bench_env(f"sqlite+aiosqlite:///{workdir / 'servers.db'}"),
        "CHATSERVICE_MODELS": stub_models(stub_url),
        "CHATSERVICE_WORKERS": "1",
        "BARE_UPSTREAM": stub_url,
    }
    subprocess.run([sys.executable, "-m", "chatservice.cli", "migrate"], env=env, check=True)
    log_config = _log_config(workdir)
    auth = {"Authorization": f"Bearer {KEY}"}
    path = "/api/v1/chat/completions"
    samples: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with ExitStack() as stack:
        stack.enter_context(serve_stub(env, stub_port))
        systems: dict[str, Server] = {}
        for server in ("uvicorn", "granian"):
            port = free_port()
            argv = (
                _gunicorn_bare(port)
                if server == "uvicorn"
                else _granian("tools.bench.bare_passthrough:app", port, factory=False,
                              log_config=log_config)
            )  # fmt: skip
            systems[f"bare/{server}"] = stack.enter_context(
                serve("bare", argv, env, port, "/v1/chat/completions", {})
            )
            port = free_port()
            service_env = {
                **env,
                "CHATSERVICE_PORT": str(port),
                "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"metrics-{server}"),
            }
            (workdir / f"metrics-{server}").mkdir()
            argv = (
                [sys.executable, "-m", "chatservice.cli", "run"]
                if server == "uvicorn"
                else _granian("chatservice.main:create_app", port, factory=True,
                              log_config=log_config)
            )  # fmt: skip
            systems[f"service/{server}"] = stack.enter_context(
                serve("service", argv, service_env, port, path, auth)
            )
        for system in systems.values():
            for body in MODES.values():
                wrk(system, body, args.connections, 1)  # warm-up
        for round_ in range(args.rounds):
            print(f"round {round_ + 1}/{args.rounds}", file=sys.stderr)
            for mode, body in MODES.items():
                for name, system in systems.items():
                    load = wrk(system, body, args.connections, args.seconds)
                    samples[f"{mode} {name}"].append((load.rps, load.cpu_ms_per_request))
    print(f"one worker, c={args.connections}, medians of {args.rounds} interleaved rounds:")
    for key, values in samples.items():
        rps = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        print(f"  {key:22} {rps:8.0f} req/s  cpu {cpu:5.2f} ms per request")


if __name__ == "__main__":
    main()
