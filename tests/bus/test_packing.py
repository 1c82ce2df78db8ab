"""``pack_commands``: the same bytes as redis-py's own packer; ``execute_batch``: replies in
order, errors after draining, never a desynchronised socket, on any redis-py client."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError, ResponseError

from orchestrator.bus import Keys, Redis, connect_redis, execute_batch
from orchestrator.bus.packing import pack_commands
from orchestrator.devstack.servers import ServerProcess

COMMANDS: list[tuple[Any, ...]] = [
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


def redis_py_packing(*args: Any) -> bytes:
    return b"".join(bytes(c) for c in Connection().pack_command(*args))


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0])[:12] + str(len(a)))
def test_packs_exactly_the_bytes_redis_py_packs(args: tuple[Any, ...]) -> None:
    assert pack_commands([args], Connection().pack_command) == redis_py_packing(*args)


def test_packs_a_batch_as_its_commands_one_after_the_other() -> None:
    expected = b"".join(redis_py_packing(*args) for args in COMMANDS)
    assert pack_commands(COMMANDS, Connection().pack_command) == expected


def test_refuses_what_redis_py_refuses() -> None:
    for bad in (True, None, [1]):
        with pytest.raises(DataError):
            pack_commands([("SET", "k", bad)], Connection().pack_command)


async def test_a_refused_argument_sends_nothing(redis: Redis, keys: Keys) -> None:
    key = f"{keys.namespace}:refused"
    with pytest.raises(DataError):
        await execute_batch(redis, [("SET", key, "1"), ("SET", key, None)])
    assert await redis.exists(key) == 0
    assert await execute_batch(redis, [("INCR", key)]) == [1]


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
    commands, expected = _mixed_batch(f"{keys.namespace}:{{batch}}")  # one slot (the DEL)
    assert _normalised(await execute_batch(redis, commands)) == expected
    assert await execute_batch(redis, []) == []


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
    key = f"{keys.namespace}:{{cancel}}"  # one slot, so one connection on a cluster too
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


@pytest.mark.parametrize("protocol", [2, 3])
async def test_execute_batch_works_on_a_plain_redis_py_client(
        redis_server: ServerProcess, keys: Keys, protocol: int) -> None:
    """Any client: string replies decoded or not, either protocol."""
    plain = aioredis.Redis.from_url(redis_server.url, protocol=protocol)
    try:
        commands, expected = _mixed_batch(f"{keys.namespace}:plain{protocol}")
        assert _normalised(await execute_batch(plain, commands)) == expected
    finally:
        await plain.aclose()
