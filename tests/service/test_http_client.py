"""The upstream HTTP client against real sockets: raw asyncio servers that send exactly the
bytes each case needs (lengths, chunks, cut connections, not HTTP at all) and a TLS server with
a certificate of its own."""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import pytest_asyncio
import uvloop
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from chatservice.kit.http_client import (
    ConnectError,
    HTTPClient,
    ResponseError,
    ServerDisconnectedError,
)
from tests.ports import free_port

# The service runs on uvloop, the other tests on asyncio's own loop: every case runs on both.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module", params=["asyncio", "uvloop"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    if request.param == "uvloop":
        policy: asyncio.AbstractEventLoopPolicy = uvloop.EventLoopPolicy()
        return policy
    return asyncio.DefaultEventLoopPolicy()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A loopback server that hands each connection to `handler` and counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.closed = 0
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.closed += 1
            writer.close()


@asynccontextmanager
async def raw_server(
    handler: Handler, tls: ssl.SSLContext | None = None
) -> AsyncIterator[RawServer]:
    server = RawServer(handler)
    listening = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=tls)
    port = listening.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listening.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """One request: its request line, headers (lower-case names) and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    line, *fields = head[:-4].split(b"\r\n")
    headers = {}
    for field in fields:
        name, _, value = field.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return line, headers, body


def answer(body: bytes, *extra: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode() + body


async def echo_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on the connection with its own request line and body."""
    while True:
        line, _, body = await read_request(reader)
        writer.write(answer(line + b" " + body))
        await writer.drain()


@pytest_asyncio.fixture(loop_scope="module")
async def client() -> AsyncIterator[HTTPClient]:
    http = HTTPClient(limit=8, connect_timeout=2)
    yield http
    await http.close()


async def test_requests_in_a_row_share_one_kept_alive_connection(client: HTTPClient) -> None:
    async with raw_server(echo_forever) as server:
        for n in range(3):
            response = await client.request("POST", server.url + "/v1/chat?x=1", body=b"n%d" % n)
            assert response.status == 200
            assert await response.read() == b"POST /v1/chat?x=1 HTTP/1.1 n%d" % n
            response.release()
    assert server.connections == 1


async def test_the_request_names_its_host_and_length_and_sends_the_headers(
    client: HTTPClient,
) -> None:
    seen: list[dict[str, str]] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, headers, _ = await read_request(reader)
        seen.append(headers)
        writer.write(answer(b"{}"))

    async with raw_server(handler) as server:
        response = await client.request(
            "POST", server.url + "/x", body=b"{}", headers={"Authorization": "Bearer k"}
        )
        await response.read()
        response.release()
        response = await client.request(
            "POST", server.url + "/x", body=b"{}", headers={"Host": "model.example"}
        )
        response.release()
    port = server.url.rpartition(":")[2]
    assert seen[0]["host"] == f"127.0.0.1:{port}"
    assert seen[0]["content-length"] == "2"
    assert seen[0]["authorization"] == "Bearer k"
    assert seen[1]["host"] == "model.example"  # a discovered endpoint's configured name


async def test_a_chunked_body_arrives_chunk_by_chunk(client: HTTPClient) -> None:
    more = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await more.wait()
        writer.write(b"6\r\nsecond\r\n0\r\n\r\n")

    async with raw_server(handler) as server:
        response = await client.request("POST", server.url + "/s", body=b"{}")
        assert await asyncio.wait_for(response.readany(), 2) == b"first"  # before the rest
        more.set()
        assert await response.read() == b"second"
        assert await response.readany() == b""
        response.release()


async def test_a_body_without_a_length_ends_with_the_connection(client: HTTPClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")

    async with raw_server(handler) as server:
        response = await client.request("POST", server.url + "/s", body=b"{}")
        assert await response.read() == b"all of it"
        response.release()
        response = await client.request("POST", server.url + "/s", body=b"{}")
        assert await response.read() == b"all of it"
        response.release()
    assert server.connections == 2  # such a connection cannot carry another answer


async def test_a_connection_cut_mid_body_fails_after_what_arrived(client: HTTPClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")

    async with raw_server(handler) as server:
        response = await client.request("POST", server.url + "/s", body=b"{}")
        assert await response.readany() == b"only ten b"
        with pytest.raises(ResponseError, match="mid-response"):
            await response.readany()
        response.close()


async def test_a_connection_closed_before_the_answer_is_a_disconnect(client: HTTPClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # took the request, then hung up

    async with raw_server(handler) as server:
        with pytest.raises(ServerDisconnectedError):
            await client.request("POST", server.url + "/s", body=b"{}")


async def test_an_answer_that_is_not_http_is_a_response_error(client: HTTPClient) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
        await asyncio.sleep(5)

    async with raw_server(handler) as server:
        with pytest.raises(ResponseError, match="not valid HTTP"):
            await asyncio.wait_for(client.request("POST", server.url + "/s", body=b"{}"), 2)


async def test_a_refused_connection_is_a_connect_error(client: HTTPClient) -> None:
    with pytest.raises(ConnectError, match="could not connect"):
        await client.request(
            "POST", f"http://127.0.0.1:{free_port()}/s", body=b"{}",
            headers={"Authorization": "Bearer secret-key"},
        )  # fmt: skip


async def test_a_header_with_a_line_break_is_refused_before_sending(client: HTTPClient) -> None:
    async with raw_server(echo_forever) as server:
        with pytest.raises(ValueError, match="line break"):
            await client.request(
                "POST", server.url + "/s", body=b"{}", headers={"X": "a\r\nInjected: yes"}
            )
    assert server.connections == 0


async def test_a_connection_the_server_closed_while_idle_is_not_reused(
    client: HTTPClient,
) -> None:
    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(answer(b"ok"))  # keep-alive, then closed as an idle server would

    async with raw_server(one_answer) as server:
        for _ in range(3):
            response = await client.request("POST", server.url + "/s", body=b"{}")
            assert await response.read() == b"ok"
            response.release()
            await asyncio.sleep(0.1)  # the server's close arrives
    assert server.connections == 3


async def test_a_request_sent_as_the_server_closes_its_idle_connection_is_sent_again(
    client: HTTPClient,
) -> None:
    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _, _, body = await read_request(reader)
        writer.write(answer(body))  # keep-alive, then closed at once

    async with raw_server(one_answer) as server:
        for n in range(3):  # no pause: each request goes out on the connection being closed
            response = await client.request("POST", server.url + "/s", body=b"%d" % n)
            assert await response.read() == b"%d" % n
            response.release()
    assert server.connections == 3


async def test_a_pooled_connection_the_upstream_drops_while_working_is_not_sent_again(
    client: HTTPClient,
) -> None:
    requests = 0

    async def dies_on_the_second(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal requests
        while True:
            await read_request(reader)
            requests += 1
            if requests == 2:
                await asyncio.sleep(0.7)  # working on it, then gone without an answer
                return
            writer.write(answer(b"ok"))

    async with raw_server(dies_on_the_second) as server:
        response = await client.request("POST", server.url + "/s", body=b"{}")
        await response.read()
        response.release()
        with pytest.raises(ServerDisconnectedError):
            await client.request("POST", server.url + "/s", body=b"{}")
    assert requests == 2  # the work the upstream may have done is not asked for twice


async def test_a_response_given_up_early_drops_its_connection(client: HTTPClient) -> None:
    gone = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await reader.read()  # until the client hangs up
        gone.set()

    async with raw_server(handler) as server:
        response = await client.request("POST", server.url + "/s", body=b"{}")
        assert await response.readany() == b"first"
        response.release()  # not read to its end: the connection cannot be reused
        await asyncio.wait_for(gone.wait(), 2)


async def test_a_cancelled_read_drops_its_connection(client: HTTPClient) -> None:
    gone = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        await reader.read()
        gone.set()

    async with raw_server(handler) as server:
        response = await client.request("POST", server.url + "/s", body=b"{}")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(response.readany(), 0.1)
        response.close()
        await asyncio.wait_for(gone.wait(), 2)


async def test_requests_beyond_the_limit_wait_for_a_connection() -> None:
    http = HTTPClient(limit=1, connect_timeout=2)
    open_now: list[int] = []
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            open_now.append(server.connections - server.closed)
            await release.wait()
            writer.write(answer(b"ok"))
            await writer.drain()

    async with raw_server(handler) as server:

        async def call() -> bytes:
            response = await http.request("POST", server.url + "/s", body=b"{}")
            body = await response.read()
            response.release()
            return body

        calls = [asyncio.create_task(call()) for _ in range(3)]
        await asyncio.sleep(0.2)
        assert len(open_now) == 1  # one request at the server, two waiting in the client
        release.set()
        assert await asyncio.wait_for(asyncio.gather(*calls), 2) == [b"ok"] * 3
    assert server.connections == 1
    await http.close()


async def test_a_reader_that_does_not_read_holds_the_upstream_back(client: HTTPClient) -> None:
    written = asyncio.Event()
    size = 256 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        block = b"x" * (1024 * 1024)
        for _ in range(size // len(block)):
            writer.write(block)
            await writer.drain()
        written.set()

    async with raw_server(handler) as server:
        response = await client.request("POST", server.url + "/s", body=b"{}")
        await asyncio.sleep(1)
        # Without reading, the socket is paused: the server cannot send it all.
        assert not written.is_set()
        first = await response.readany()
        assert 0 < len(first) < 16 * 1024 * 1024
        response.close()


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_tls_checks_the_certificate_against_the_server_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert_file, key_file = _certificate(tmp_path, "model.internal")
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))  # the trust store the client reads
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert_file, key_file)
    http = HTTPClient(limit=4, connect_timeout=2)
    async with raw_server(echo_forever, tls) as server:
        # A discovered endpoint: an address in the URL, the configured name for TLS.
        response = await http.request(
            "POST", server.url + "/s", body=b"{}", server_hostname="model.internal"
        )
        assert await response.read() == b"POST /s HTTP/1.1 {}"
        response.release()
        with pytest.raises(ConnectError, match="SSL"):
            await http.request("POST", server.url + "/s", body=b"{}")  # 127.0.0.1 is not it
    await http.close()
