"""Bounds on what a client can make a worker hold: body size, head size and head time,
against a real gunicorn with the service's worker class."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.gunicorn_server import Gunicorn, gunicorn_starter

LIMIT = 1024 * 1024
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(sqlite_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    with gunicorn_starter(sqlite_database, tmp_path_factory.mktemp("bounds")) as start:
        yield start(
            CHATSERVICE_MAX_REQUEST_BYTES=str(LIMIT),
            CHATSERVICE_MAX_HEADER_BYTES=str(64 * 1024),
            CHATSERVICE_HEADER_TIMEOUT="1",
        )


@pytest.fixture(scope="module")
def sqlite_database(tmp_path_factory: pytest.TempPathFactory) -> str:
    from chatservice.db.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'chatservice.db'}"
    upgrade(url)
    return url


def _rss_mib(server: Gunicorn) -> float:
    total = 0
    for pid in server.worker_pids():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def _connect(server: Gunicorn) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def _read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed without a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


def _chat_head(server: Gunicorn, extra: str) -> bytes:
    return (
        "POST /api/v1/chat/completions HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {server.key}\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


def test_a_declared_length_over_the_limit_is_refused_before_the_body(server: Gunicorn) -> None:
    with _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(_chat_head(server, f"Content-Length: {50 * MiB}\r\n"))
        status, headers, body = _read_response(sock)
    assert time.monotonic() - started < 5
    assert status == 413
    assert json.loads(body)["error"]["code"] == "request_too_large"
    assert headers["connection"] == "close"


def test_a_chunked_body_is_counted_as_it_arrives(server: Gunicorn) -> None:
    before = _rss_mib(server)
    chunk = b"x" * 65536
    with _connect(server) as sock:
        sock.sendall(_chat_head(server, "Transfer-Encoding: chunked\r\n"))
        sent = 0
        try:
            while sent < 20 * MiB:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed while we were still sending
        status, _, body = _read_response(sock)
    assert status == 413
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
    assert sent < 20 * MiB, "the server read the whole body"
    assert _rss_mib(server) - before < 30


def test_bodies_within_the_limit_are_served(server: Gunicorn) -> None:
    content = "word " * (LIMIT // 10)
    response = httpx.post(
        server.api + "/chat/completions",
        headers={"Authorization": f"Bearer {server.key}"},
        json={"model": "echo", "messages": [{"role": "user", "content": content}]},
        timeout=30,
    )
    assert response.status_code == 200


def test_an_oversized_head_is_refused_without_buffering_it(server: Gunicorn) -> None:
    before = _rss_mib(server)
    with _connect(server) as sock:
        sock.sendall(b"GET /api/v1/health/live HTTP/1.1\r\nHost: localhost\r\nX-Big: ")
        try:
            for _ in range(64):
                sock.sendall(b"a" * MiB)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, _, body = _read_response(sock)
    assert status == 431
    assert json.loads(body)["error"]["code"] == "request_header_fields_too_large"
    assert _rss_mib(server) - before < 30


def test_heads_that_never_finish_are_closed(server: Gunicorn) -> None:
    sockets = [_connect(server) for _ in range(200)]
    try:
        for index, sock in enumerate(sockets):
            # Half send nothing at all, half a head that never ends.
            if index % 2:
                sock.sendall(b"GET /api/v1/health/live HTTP/1.1\r\nHost: a\r\n")
        started = time.monotonic()
        for sock in sockets:
            sock.settimeout(10)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            assert data.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 8
    finally:
        for sock in sockets:
            sock.close()
    # Live clients are not affected.
    assert httpx.get(server.api + "/health/live", timeout=5).status_code == 200


def test_a_keep_alive_connection_serves_several_requests(server: Gunicorn) -> None:
    with httpx.Client(timeout=5) as client:
        for _ in range(3):
            assert client.get(server.api + "/health/live").status_code == 200
            time.sleep(0.3)
