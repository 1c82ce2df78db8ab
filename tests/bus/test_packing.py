"""hiredis command packing: the same bytes as redis-py's own packer, on a real server too;
``execute_batch``: replies in order, errors after draining, never a desynchronised socket."""

from __future__ import annotations

import anyio
import pytest
import redis.asyncio as aioredis
from redis._parsers import _AsyncHiredisParser, _AsyncRESP2Parser, _AsyncRESP3Parser
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError, ResponseError

from orchestrator.bus.keys import Keys
from orchestrator.bus.packing import HiredisPacking, execute_batch, with_hiredis_packing
from orchestrator.bus.streams import Redis, connect_redis
from orchestrator.devstack.servers import ServerProcess

COMMANDS: list[tuple[object, ...]] = [
    ("SET", "k", "v"),
    ("SET", "ké", "välue ✓"),
    ("SET", b"k", b"\x00\xff\r\n"),
    ("SET", "k", 1.5),
    ("SET", "k", 0.1),
    ("SET", "k", 1e20),
    ("SET", "k", -3),
    ("CONFIG GET", "maxmemory"),
    (b"CONFIG GET", "maxmemory"),
    ("SET", "k", bytearray(b"ab")),
    ("SET", "k", memoryview(b"cd")),
    ("XACK", "s", "g", *[f"1795318929436-{i}" for i in range(500)]),
    ("XADD", "s", "MAXLEN", "~", 10_000, "*", b"event", b'{"x": "' + b"y" * 20_000 + b'"}'),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0])[:12] + str(len(a)))
def test_packs_exactly_the_bytes_redis_py_packs(args: tuple[object, ...]) -> None:
    reference = b"".join(bytes(c) for c in Connection().pack_command(*args))
    packed = with_hiredis_packing(Connection)().pack_command(*args)
    assert b"".join(packed) == reference


def test_refuses_what_redis_py_refuses() -> None:
    conn = with_hiredis_packing(Connection)()
    for bad in (True, None, [1]):
        with pytest.raises(DataError):
            conn.pack_command("SET", "k", bad)


def test_keeps_the_connection_kind() -> None:
    unix = with_hiredis_packing(UnixDomainSocketConnection)
    assert issubclass(unix, UnixDomainSocketConnection) and issubclass(unix, HiredisPacking)
    assert with_hiredis_packing(unix) is unix
    assert with_hiredis_packing(UnixDomainSocketConnection) is unix


async def test_the_bus_client_round_trips_through_a_real_server(redis: Redis,
                                                                keys: Keys) -> None:
    assert issubclass(redis.connection_pool.connection_class, HiredisPacking)
    key = f"{keys.namespace}:packing"
    await redis.set(key, "välue ✓")
    assert await redis.get(key) == "välue ✓".encode()
    ids = [await redis.xadd(f"{key}:s", {b"event": b"\x00" * 3 + b"x" * 10_000})
           for _ in range(300)]
    await redis.xgroup_create(f"{key}:s", "g", id="0")
    reply = await redis.xreadgroup("g", "c", {f"{key}:s": ">"}, count=1000)
    assert len(reply[0][1]) == 300
    assert await redis.xack(f"{key}:s", "g", *ids) == 300
    await redis.delete(key, f"{key}:s")


def _mixed_batch(key: str) -> tuple[list[tuple[object, ...]], list[object]]:
    """Commands whose replies span several socket reads (1 MiB values), and what they give."""
    big = b"\xfe" * (1 << 20)
    commands: list[tuple[object, ...]] = [("SET", f"{key}:big", big), ("GET", f"{key}:big")]
    expected: list[object] = [True, big]
    for i in range(300):
        commands.append(("INCRBY", f"{key}:n", i))
        expected.append(sum(range(i + 1)))
    commands += [("DEL", f"{key}:big", f"{key}:n"), ("GET", f"{key}:big")]
    expected += [2, None]
    return commands, expected


def _normalised(replies: list[object]) -> list[object]:
    return [True if r in (b"OK", "OK") else r for r in replies]


async def test_execute_batch_returns_every_reply_in_order(redis: Redis, keys: Keys) -> None:
    commands, expected = _mixed_batch(f"{keys.namespace}:batch")
    assert _normalised(await execute_batch(redis, commands)) == expected
    assert await execute_batch(redis, []) == []


async def test_execute_batch_without_the_hiredis_parser_gives_the_same_replies(
    redis_server: ServerProcess, keys: Keys
) -> None:
    client = connect_redis(redis_server.url)
    client.connection_pool.connection_kwargs["parser_class"] = _AsyncRESP2Parser
    try:
        conn = await client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
        # (redis-py picks its pure-Python RESP2 or RESP3 parser by protocol)
        assert isinstance(conn._parser, _AsyncRESP2Parser | _AsyncRESP3Parser)
        assert not isinstance(conn._parser, _AsyncHiredisParser)
        await client.connection_pool.release(conn)
        commands, expected = _mixed_batch(f"{keys.namespace}:resp2")
        assert _normalised(await execute_batch(client, commands)) == expected
    finally:
        await client.aclose()


async def test_an_error_reply_is_raised_after_all_replies_are_read(redis: Redis,
                                                                   keys: Keys) -> None:
    key = f"{keys.namespace}:errors"
    await redis.set(f"{key}:str", "x")
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await execute_batch(redis, [("INCR", f"{key}:a"), ("LPUSH", f"{key}:str", "v"),
                                    ("INCR", f"{key}:a"), ("XACK", f"{key}:none", "g", "1-0")])
    # Every command ran (a batch is not a transaction) and the socket is in step: the next
    # replies on the same pool answer the next commands.
    assert await redis.get(f"{key}:a") == b"2"
    assert await execute_batch(redis, [("INCR", f"{key}:a")] * 3) == [3, 4, 5]


async def test_a_batch_cancelled_half_read_closes_its_connection(redis: Redis,
                                                                  keys: Keys) -> None:
    key = f"{keys.namespace}:cancel"
    # BLPOP holds its reply (and the INCR queued behind it) back; the batch is cancelled
    # while waiting. Its connection is closed, so Redis drops the rest of it.
    with anyio.move_on_after(0.3) as scope:
        await execute_batch(redis, [("INCR", key), ("BLPOP", f"{key}:list", 5), ("INCR", key)])
    assert scope.cancelled_caught
    await redis.rpush(f"{key}:list", "v")  # would answer the BLPOP on a reused socket
    # Nothing late is read as the answer to a later command.
    assert await execute_batch(redis, [("INCR", key), ("GET", key)]) == [2, b"2"]
    assert await redis.lrange(f"{key}:list", 0, -1) == [b"v"]
    assert await redis.ping() is True


async def test_execute_batch_reconnects_after_its_connection_is_killed(
    redis: Redis, redis_server: ServerProcess, keys: Keys
) -> None:
    key = f"{keys.namespace}:killed"
    await execute_batch(redis, [("SET", key, "1")])
    admin = connect_redis(redis_server.url)
    try:
        assert await admin.client_kill_filter(_type="normal", skipme=True) >= 1
    finally:
        await admin.aclose()
    # The pooled connection is dead; the batch is sent again on a new one (client retry).
    assert await execute_batch(redis, [("INCR", key), ("GET", key)]) == [2, b"2"]


async def test_execute_batch_works_on_a_plain_redis_py_client(redis_server: ServerProcess,
                                                              keys: Keys) -> None:
    plain = aioredis.Redis.from_url(redis_server.url)
    try:
        assert not issubclass(plain.connection_pool.connection_class, HiredisPacking)
        commands, expected = _mixed_batch(f"{keys.namespace}:plain")
        assert _normalised(await execute_batch(plain, commands)) == expected
    finally:
        await plain.aclose()
