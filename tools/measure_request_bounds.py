"""Measure what unbounded requests cost a real `chatservice run`: huge bodies, huge heads and
heads that never finish. `--unbounded` runs the same code with the body limit lifted and
uvicorn-worker's own worker class, i.e. as the service ran before the bounds.

    .venv/bin/python tools/measure_request_bounds.py [--unbounded] [--port 18400]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

MiB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--unbounded", action="store_true")
    parser.add_argument("--port", type=int, default=18400)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="chatservice-bounds-"))
    database = f"sqlite+aiosqlite:///{directory / 'chatservice.db'}"
    key = "sk-measure-" + secrets.token_hex(20)
    env = {
        **os.environ,
        "CHATSERVICE_DATABASE_URL": database,
        "CHATSERVICE_HOST": "127.0.0.1",
        "CHATSERVICE_PORT": str(args.port),
        "CHATSERVICE_WORKERS": "1",
        "CHATSERVICE_ADMIN_API_KEY": key,
        "CHATSERVICE_LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(directory / "metrics"),
    }
    if args.unbounded:
        env["CHATSERVICE_MAX_REQUEST_BYTES"] = str(2**40)
        env["GUNICORN_CMD_ARGS"] = "--worker-class uvicorn_worker.UvicornWorker"
    cli = [sys.executable, "-m", "chatservice.cli"]
    subprocess.run([*cli, "migrate"], env=env, check=True, capture_output=True)
    server = subprocess.Popen([*cli, "run"], env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{args.port}"
    try:
        _wait(base)
        print("unbounded (before)" if args.unbounded else "bounded (after)")
        _measure_heads(server.pid, args.port)
        _measure_slow_heads(args.port)
        _measure_bodies(server.pid, base, key)
    finally:
        server.terminate()
        server.wait(30)


def _wait(base: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/api/v1/health/live", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the service did not start")


def _worker_rss_mib(master: int) -> float:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _status_of(sock: socket.socket) -> str:
    try:
        data = sock.recv(4096)
    except (ConnectionResetError, TimeoutError) as exc:
        return type(exc).__name__
    return data.split(b"\r\n", 1)[0].decode() or "closed"


def _measure_heads(master: int, port: int) -> None:
    before = _worker_rss_mib(master)
    started = time.monotonic()
    statuses = []
    for _ in range(4):
        with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
            sock.sendall(b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
            try:
                for _ in range(64):
                    sock.sendall(b"a" * MiB)
                sock.sendall(b"\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            statuses.append(_status_of(sock))
    print(
        f"  4 heads of 64 MiB, no key: {statuses}, {time.monotonic() - started:.1f} s, "
        f"worker RSS {before:.0f} -> {_worker_rss_mib(master):.0f} MiB"
    )


def _measure_slow_heads(port: int, count: int = 1000, wait: float = 15.0) -> None:
    sockets = []
    for index in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if index % 2:
            sock.sendall(b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\n")
        sockets.append(sock)
    time.sleep(wait)
    still_open = 0
    for sock in sockets:
        sock.setblocking(False)
        try:
            data = sock.recv(4096)
            still_open += 0 if data == b"" or data.startswith(b"HTTP/1.1 408") else 1
        except BlockingIOError:
            still_open += 1
        except ConnectionResetError:
            pass
        sock.close()
    print(f"  {count} connections with unfinished heads: {still_open} still open after {wait:g} s")


def _measure_bodies(master: int, base: str, key: str) -> None:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    content = "word " * (50 * MiB // 5)
    body = b'{"model": "echo", "messages": [{"role": "user", "content": "%s"}]}' % content.encode()
    for label, payload in (("valid JSON", body), ("invalid JSON", b"[" * (50 * MiB))):
        before = _worker_rss_mib(master)
        started = time.monotonic()
        try:
            status: object = httpx.post(
                base + "/api/v1/chat/completions", headers=headers, content=payload, timeout=120
            ).status_code
        except httpx.TransportError as exc:
            status = type(exc).__name__
        print(
            f"  50 MiB body, {label}, with a key: {status}, {time.monotonic() - started:.1f} s, "
            f"worker RSS {before:.0f} -> {_worker_rss_mib(master):.0f} MiB"
        )


if __name__ == "__main__":
    main()
