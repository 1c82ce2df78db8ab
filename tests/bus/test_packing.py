"""hiredis command packing: the same bytes as redis-py's own packer, on a real server too."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import DataError

from orchestrator.bus.keys import Keys
from orchestrator.bus.packing import HiredisPacking, with_hiredis_packing
from orchestrator.bus.streams import Redis

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
