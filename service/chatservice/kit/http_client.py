"""A small HTTP/1.1 client for the upstream calls: keep-alive connections pooled per origin,
responses parsed by `httptools` (llhttp, the parser uvicorn uses), bodies read as they arrive.

aiohttp's client spent about 0.2 ms of CPU on each upstream request here, more than the rest
of the gateway's work on a JSON answer; a request on a pooled connection of this client costs
about a quarter of that. It does only what the upstream calls need: one request at a time per
connection, no redirects, no cookies, no proxy, no compression (it does not ask for any), TLS
with the system's trust store (`SSL_CERT_FILE` and `SSL_CERT_DIR` are honoured).

Failures are `HTTPClientError`s: `ConnectError` when no request was sent (safe to send
elsewhere), `ServerDisconnectedError` when the connection closed before the response's head
(the upstream may have started the work), `ResponseError` for a response cut short or not
HTTP. Timeouts other than connecting are the caller's (an `asyncio.timeout` around `request`,
a `ReadTimer` around reads); a cancelled request or read drops its connection.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools
from opentelemetry import propagate, trace

from chatservice import __version__

# Connections idle longer are closed rather than reused: below the 5 s after which uvicorn
# (vLLM's server) and Node close an idle keep-alive connection, so a request rarely goes out on
# a connection the server is closing (and when it does, it is sent again on another).
IDLE_TIMEOUT = 4.0
# How soon after a request went out on a pooled connection a close still means the server had
# dropped the connection before reading it (its FIN was on the way), not that it failed on it.
STALE_WINDOW = 0.5
# A reader this far behind pauses the socket, so a slow client cannot make the gateway buffer
# a whole answer.
HIGH_WATER = 256 * 1024

_USER_AGENT = f"chatservice/{__version__}"


class HTTPClientError(Exception):
    """An upstream call that failed below HTTP: the message says how, never with secrets."""


class ConnectError(HTTPClientError):
    """No connection (refused, unresolvable, TLS refused, timed out): nothing was sent."""


class ServerDisconnectedError(HTTPClientError):
    """The connection closed after the request went out and before the response's head."""


class ResponseError(HTTPClientError):
    """What came back is not a whole HTTP response."""


class _Origin(NamedTuple):
    host: str
    port: int
    tls: bool
    server_hostname: str | None


class _Target(NamedTuple):
    origin: _Origin
    path: str  # with the query
    host_header: str


@functools.lru_cache(maxsize=1024)
def _target(url: str, server_hostname: str | None) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
    tls = parts.scheme == "https"
    origin = _Origin(parts.hostname, parts.port or (443 if tls else 80), tls, server_hostname)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(origin, path, parts.netloc.rpartition("@")[2])


class HTTPClient:
    def __init__(
        self,
        *,
        limit: int,
        connect_timeout: float,
        tracer_provider: trace.TracerProvider | None = None,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        """`limit`: the most connections open at once, over all origins (more requests wait
        for one)."""
        self._limit = limit
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._tracer = (
            tracer_provider.get_tracer("chatservice.http_client", __version__)
            if tracer_provider is not None
            else None
        )
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ssl: ssl.SSLContext | None = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        server_hostname: str | None = None,
    ) -> Response:
        """Send the request and wait for the response's head; read its body from the
        `Response`, then `release` or `close` it. `server_hostname`: TLS's name for a URL with
        an address."""
        target = _target(url, server_hostname)
        if self._tracer is None:
            return await self._request(method, target, body, headers or {})
        with self._tracer.start_as_current_span(
            method,
            kind=trace.SpanKind.CLIENT,
            attributes={
                "http.request.method": method,
                "server.address": target.origin.host,
                "server.port": target.origin.port,
                "url.full": url,
            },
        ) as span:
            traced = dict(headers or {})
            propagate.inject(traced)
            response = await self._request(method, target, body, traced)
            span.set_attribute("http.response.status_code", response.status)
            if response.status >= 400:
                span.set_attribute("error.type", str(response.status))
                span.set_status(trace.StatusCode.ERROR)
            return response

    async def close(self) -> None:
        for connection in list(self._open):
            connection.close()

    async def _request(
        self, method: str, target: _Target, body: bytes, headers: Mapping[str, str]
    ) -> Response:
        head = [f"{method} {target.path} HTTP/1.1\r\n"]
        if not any(name.lower() == "host" for name in headers):
            head.append(f"Host: {target.host_header}\r\n")
        for name, value in headers.items():
            if "\n" in value or "\r" in value or "\n" in name or "\r" in name:
                raise ValueError(f"a line break in the header {name!r}")
            head.append(f"{name}: {value}\r\n")
        head.append(
            f"User-Agent: {_USER_AGENT}\r\nContent-Length: {len(body)}\r\n\r\n"
            if body or method not in ("GET", "HEAD")
            else f"User-Agent: {_USER_AGENT}\r\n\r\n"
        )
        message = "".join(head).encode("latin-1") + body
        while True:
            connection = await self._connection(target.origin)
            try:
                return await connection.send(message)
            except ServerDisconnectedError:
                connection.close()
                if not connection.stale:
                    raise
                # The server closed this idle connection as the request went out on it, so it
                # never read the request: send it again (each retry uses up an idle one).
            except BaseException:
                connection.close()
                raise

    async def _connection(self, origin: _Origin) -> _Connection:
        while True:
            idle = self._idle.get(origin)
            now = time.monotonic()
            while idle:
                connection = idle.pop()  # the most recently used: the least likely dropped
                if connection.closed:
                    continue
                if now - connection.idle_since > self._idle_timeout:
                    connection.close()
                    continue
                return connection
            if len(self._open) < self._limit or self._close_idle():
                return await self._connect(origin)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif waiter.done() and not waiter.cancelled():
                    self._wake()  # woken, then cancelled: the freed connection is another's
                raise

    async def _connect(self, origin: _Origin) -> _Connection:
        loop = asyncio.get_running_loop()
        connection = _Connection(self, origin)
        self._open.add(connection)  # counted while connecting, so the limit holds
        try:
            async with asyncio.timeout(self._connect_timeout):
                await loop.create_connection(
                    lambda: connection,
                    origin.host,
                    origin.port,
                    ssl=self._ssl_context() if origin.tls else None,
                    server_hostname=(origin.server_hostname or origin.host) if origin.tls else None,
                )
        except TimeoutError:
            self._forget(connection)
            raise ConnectError(f"connecting to {origin.host}:{origin.port} timed out") from None
        except OSError as exc:
            self._forget(connection)
            raise ConnectError(
                f"could not connect to {origin.host}:{origin.port}: {type(exc).__name__}"
                f" {exc.strerror or exc}"
            ) from exc
        except BaseException:
            connection.close()
            raise
        return connection

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _close_idle(self) -> bool:
        """Make room under the limit by closing an idle connection to another origin."""
        for connections in self._idle.values():
            while connections:
                connections.pop().close()
                if len(self._open) < self._limit:
                    return True
        return False

    def _reuse(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        self._idle.setdefault(connection.origin, []).append(connection)
        self._wake()

    def _forget(self, connection: _Connection) -> None:
        if connection in self._open:
            self._open.discard(connection)
            self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class _Connection(asyncio.Protocol):
    """One connection: one request at a time, its response parsed as the bytes arrive."""

    def __init__(self, client: HTTPClient, origin: _Origin) -> None:
        self.origin = origin
        self.closed = False
        self.idle_since = 0.0
        self._requests = 0
        self._heard = False  # a byte of the current response
        self._sent_at = 0.0
        self._lost_at = 0.0
        self._client = client
        self._transport: asyncio.Transport | None = None
        self._response: Response | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream socket's transport; uvloop's are not registered as asyncio.Transport.
        self._transport = cast("asyncio.Transport", transport)

    async def send(self, message: bytes) -> Response:
        assert self._transport is not None  # noqa: S101 - connected before the pool hands it out
        assert self._response is None  # noqa: S101 - one request at a time
        response = Response(self)
        self._response = response
        self._requests += 1
        self._heard = False
        self._sent_at = time.monotonic()
        self._transport.write(message)
        await response.head
        return response

    @property
    def stale(self) -> bool:
        """Closed by the server at once, before a byte of the answer, on a connection that had
        been idle in the pool: the race every keep-alive client meets. (An upstream that dies
        later, while working on the request, is not retried.)"""
        return (
            self._requests > 1
            and not self._heard
            and 0 < self._lost_at - self._sent_at < STALE_WINDOW
        )

    def data_received(self, data: bytes) -> None:
        self._heard = True
        if self._response is None:
            self.close()  # bytes nobody asked for: this connection cannot be trusted again
            return
        self._response.feed(data)

    def eof_received(self) -> bool:
        return False  # a half-closed upstream is a closed one

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost_at = time.monotonic()
        self.closed = True
        self._client._forget(self)
        if self._response is not None:
            self._response.lost(exc)

    def pause_reading(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self.closed:
            self._transport.resume_reading()

    def done(self, response: Response, *, keep_alive: bool) -> None:
        """The response was read to its end (or given up): reuse the connection or drop it."""
        if self._response is not response:
            return
        self._response = None
        if keep_alive and not self.closed:
            self._client._reuse(self)
        else:
            self.close()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()
        self._client._forget(self)


class Response:
    """The status and headers (lower-case names) of a response; its body as it arrives."""

    __slots__ = (
        "_body_until_close", "_buffer", "_complete", "_connection", "_error", "_keep_alive",
        "_parser", "_paused", "_size", "_waiter", "head", "headers", "status",
    )  # fmt: skip

    def __init__(self, connection: _Connection) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._connection = connection
        self._parser = httptools.HttpResponseParser(self)
        self._buffer: list[bytes] = []
        self._size = 0
        self._complete = False
        self._keep_alive = False
        self._paused = False
        self._body_until_close = False
        self._error: HTTPClientError | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def readany(self) -> bytes:
        """What arrived since the last read (waiting for something); b"" at the end."""
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self._complete:
                return b""
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        data = self._buffer[0] if len(self._buffer) == 1 else b"".join(self._buffer)
        self._buffer.clear()
        self._size = 0
        if self._paused:
            self._paused = False
            self._connection.resume_reading()
        return data

    async def read(self, limit: int | None = None) -> bytes:
        """The rest of the body (its first `limit` bytes: the rest is dropped with the
        connection)."""
        parts: list[bytes] = []
        size = 0
        while limit is None or size < limit:
            part = await self.readany()
            if not part:
                break
            parts.append(part)
            size += len(part)
        return b"".join(parts)[:limit]

    def release(self) -> None:
        """Done with the response: its connection goes back to the pool if it was read to
        the end and may be kept, otherwise it is closed."""
        self._connection.done(
            self, keep_alive=self._complete and not self._buffer and self._keep_alive
        )

    def close(self) -> None:
        """Drop the connection (how an upstream learns nobody reads its answer any more)."""
        self._connection.done(self, keep_alive=False)

    # What the connection tells it.

    def feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(ResponseError("the upstream switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(ResponseError(f"the upstream's response is not valid HTTP: {exc}"))

    def lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self._fail(ServerDisconnectedError("the upstream closed the connection"))
        elif self._body_until_close and exc is None:
            self.on_message_complete()  # a body without a length ends with the connection
        elif not self._complete:
            self._fail(ResponseError("the upstream closed the connection mid-response"))

    def _fail(self, error: HTTPClientError) -> None:
        if self._complete or self._error is not None:
            return
        self._error = error
        if not self.head.done():
            self.head.set_exception(error)
        self._wake()
        self._connection.close()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # httptools' callbacks.

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._body_until_close = (
            "content-length" not in self.headers
            and "chunked" not in self.headers.get("transfer-encoding", "")
        )
        if not self.head.done():
            self.head.set_result(None)

    def on_body(self, body: bytes) -> None:
        self._buffer.append(body)
        self._size += len(body)
        if self._size > HIGH_WATER and not self._paused:
            self._paused = True
            self._connection.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        # Asked now: once the message is done, llhttp resets and no longer knows.
        self._keep_alive = bool(self._parser.should_keep_alive())
        self._complete = True
        self._wake()
