"""A small Redis client for the rate limits' two scripts: one connection per worker, every
command pipelined on it (replies come back in order), commands of one event-loop turn sent in
one write.

redis-py's asyncio client spent about 100-200 µs of a worker's CPU per call (pool, lock,
retry wrapper, parser), several times the round trip itself; this costs a few µs. It speaks
only what the scripts need (RESP2 over TCP, TLS or a Unix socket, AUTH and SELECT from the
URL, parsed by redis-py) and raises redis-py's exceptions, so callers handle one set.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio.connection import parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

Reply = int | bytes | str | list[Any] | None


class _Incomplete(Exception):
    """The buffer ends inside a reply: wait for more bytes."""


@dataclass(frozen=True, slots=True)
class Encoded:
    """Arguments encoded once, to go into many commands as they are: a rate limit's keys and
    limits are the same for every request of a key, and encoding them was most of a check's
    client CPU."""

    count: int
    data: bytes

    @classmethod
    def of(cls, *args: bytes | str | int) -> Encoded:
        out: list[bytes] = []
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out += (b"$%d\r\n" % len(data), data, b"\r\n")
        return cls(len(args), b"".join(out))


Arg = bytes | str | int | Encoded


def encode(*args: Arg) -> bytes:
    out = [b""]
    count = 0
    for arg in args:
        if isinstance(arg, Encoded):
            out.append(arg.data)
            count += arg.count
            continue
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out += (b"$%d\r\n" % len(data), data, b"\r\n")
        count += 1
    out[0] = b"*%d\r\n" % count
    return b"".join(out)


def _count(args: Sequence[Arg]) -> int:
    return sum(arg.count if isinstance(arg, Encoded) else 1 for arg in args)


def parse(buffer: bytes, start: int) -> tuple[Reply | ResponseError, int]:
    """One reply from `buffer[start:]` and where the next begins; `_Incomplete` if it is not
    all there yet. An error reply is returned (not raised): it answers one command only."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise _Incomplete
    kind, line = buffer[start : start + 1], buffer[start + 1 : end]
    after = end + 2
    if kind == b":":
        return int(line), after
    if kind == b"+":
        return line.decode(), after
    if kind == b"-":
        message = line.decode(errors="replace")
        error = NoScriptError if message.startswith("NOSCRIPT") else ResponseError
        return error(message), after
    if kind == b"$":
        length = int(line)
        if length < 0:
            return None, after
        if len(buffer) < after + length + 2:
            raise _Incomplete
        return buffer[after : after + length], after + length + 2
    if kind == b"*":
        items: list[Any] = []
        for _ in range(max(int(line), 0)):
            item, after = parse(buffer, after)
            items.append(item)
        return items, after
    raise RedisConnectionError(f"unexpected reply from Redis: {buffer[start:end][:40]!r}")


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.waiting: deque[asyncio.Future[Reply]] = deque()
        # When each waiting command was sent, oldest first (the loop's clock).
        self.sent: deque[float] = deque()
        self._buffer = b""
        self._pending: list[bytes] = []
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream connection (uvloop's transports are not asyncio.Transport subclasses).
        self.transport = cast(asyncio.Transport, transport)

    def send(self, command: bytes) -> asyncio.Future[Reply]:
        if self.lost is not None or self.transport is None:
            raise RedisConnectionError("the connection to Redis is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        self.waiting.append(future)
        self.sent.append(loop.time())
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append(command)
        return future

    def _flush(self) -> None:
        if self.transport is not None and self._pending and self.lost is None:
            self.transport.write(b"".join(self._pending))
        self._pending.clear()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer + data if self._buffer else data
        start = 0
        try:
            while start < len(buffer):
                reply, start = parse(buffer, start)
                future = self.waiting.popleft()
                self.sent.popleft()
                if future.done():  # its caller gave up (a timeout); the order still holds
                    continue
                if isinstance(reply, ResponseError):
                    future.set_exception(reply)
                else:
                    future.set_result(reply)
        except _Incomplete:
            pass
        except (RedisConnectionError, ValueError, IndexError) as exc:
            self.fail(RedisConnectionError(f"unreadable reply from Redis: {exc}"))
            return
        self._buffer = buffer[start:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"the connection to Redis was lost: {exc or 'closed'}"))

    def fail(self, error: BaseException) -> None:
        """Every waiting command gets `error`, and the connection is not used again."""
        if self.lost is None:
            self.lost = error
        self.sent.clear()
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        if self.transport is not None:
            self.transport.close()


class RespClient:
    """`stale_after`: a connection whose oldest command has waited that long for its reply is
    dropped and a new one made (a server that froze, or a connection that silently died)."""

    def __init__(self, url: str, stale_after: float) -> None:
        self._stale_after = stale_after
        options = parse_url(url)
        self._path: str | None = options.get("path")
        self._host = options.get("host", "localhost")
        self._port = int(options.get("port", 6379))
        self._ssl: ssl.SSLContext | None = None
        if any(name.startswith("ssl") for name in options) or url.startswith("rediss:"):
            self._ssl = ssl.create_default_context()
        self._setup: list[bytes] = []
        password, username = options.get("password"), options.get("username")
        if password:
            self._setup.append(encode("AUTH", *([username] if username else []), password))
        if options.get("db"):
            self._setup.append(encode("SELECT", int(options["db"])))
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()

    async def _connection(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.sent:
            if asyncio.get_running_loop().time() - protocol.sent[0] > self._stale_after:
                protocol.fail(RedisConnectionError("Redis stopped answering"))
        if protocol is not None and protocol.lost is None:
            return protocol
        async with self._connecting:
            if self._protocol is None or self._protocol.lost is not None:
                self._protocol = await self._connect()
            return self._protocol

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        if self._path is not None:
            _, protocol = await loop.create_unix_connection(_Protocol, self._path)
        else:
            _, protocol = await loop.create_connection(
                _Protocol, self._host, self._port, ssl=self._ssl
            )
        try:
            for reply in await asyncio.gather(*(protocol.send(c) for c in self._setup)):
                if reply != "OK":
                    raise RedisConnectionError(f"Redis refused the connection's setup: {reply!r}")
        except BaseException:
            protocol.fail(RedisConnectionError("the connection's setup failed"))
            raise
        return protocol

    async def call(self, *args: Arg) -> Reply:
        """Send one command and wait for its reply. A caller that stops waiting (its timeout,
        its client gone) leaves the connection as it is: the reply is read and dropped."""
        protocol = await self._connection()
        return await protocol.send(encode(*args))

    def send(self, *args: Arg) -> asyncio.Future[Reply]:
        """Send one command now and return its reply's future, for a caller that does not wait
        for it: on the open connection, without a task; only when there is none (or it went
        stale) does a task connect first. Cancelling the future drops the reply, as above."""
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            sent = protocol.sent
            if not sent or asyncio.get_running_loop().time() - sent[0] <= self._stale_after:
                return protocol.send(encode(*args))
        return asyncio.ensure_future(self.call(*args))

    async def close(self) -> None:
        if self._protocol is not None:
            self._protocol.fail(RedisConnectionError("the client was closed"))
            self._protocol = None


class Script:
    """A Lua script run by its SHA1 (EVALSHA), loaded with EVAL when the server lacks it."""

    def __init__(self, client: RespClient, source: str) -> None:
        self._client = client
        self._source = source
        self._sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[Arg], args: Sequence[Arg]) -> Reply:
        command = (_count(keys), *keys, *args)
        try:
            return await self._client.call("EVALSHA", self._sha, *command)
        except NoScriptError:
            return await self._client.call("EVAL", self._source, *command)

    def send(self, keys: Sequence[Arg], args: Sequence[Arg]) -> asyncio.Future[Reply]:
        """As a call, but sent now and not waited for (RespClient.send); the future ends with
        the script's reply, after a second round trip if the server had to load it."""
        done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        command = (_count(keys), *keys, *args)

        def ran(sent: asyncio.Future[Reply]) -> None:
            if not sent.cancelled() and isinstance(sent.exception(), NoScriptError):
                if done.done():
                    return
                try:
                    loading = self._client.send("EVAL", self._source, *command)
                except RedisConnectionError as exc:
                    done.set_exception(exc)
                    return
                loading.add_done_callback(lambda loaded: _copy(loaded, done))
            else:
                _copy(sent, done)

        self._client.send("EVALSHA", self._sha, *command).add_done_callback(ran)
        return done


def _copy(source: asyncio.Future[Reply], target: asyncio.Future[Reply]) -> None:
    """`source`'s outcome onto `target`, unless `target` was given up on already."""
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())
