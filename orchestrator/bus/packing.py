"""Command packing and batched replies in C for redis-py's asyncio connections.

redis-py's *sync* connections pack commands with ``hiredis.pack_command`` when hiredis is
installed; its *asyncio* connections always use a pure-Python packer that re-joins the growing
buffer once per argument. On the daemon's hot path that is the XACK of a whole batch (hundreds
of ids) and every pipelined XADD: ``bench/bench_core.py`` prints the cost of packing a 200-id
XACK and one event XADD both ways (~235 against ~30 µs, ~9 against ~2 µs). Plain commands
go straight to ``hiredis.pack_command``; the rest to redis-py's own ``HiredisRespSerializer``
(the one its sync connections use). The bytes on the wire are identical
(tests/bus/test_packing.py).

``execute_batch`` is a non-transactional pipeline without redis-py's per-command machinery
(its ``Pipeline`` queues, packs and parses every command through several Python layers): all
commands packed into one write, and the replies taken from hiredis's reader in one loop. It
works on any redis-py asyncio client; the commit of the daemon's batches goes through it.
The daemon commits each batch this way (commands, watcher updates, XACK):
``bench/bench_daemon.py`` measures a batch's 240 update XADDs at ~1.9-2.0 ms of CPU through
redis-py's pipeline and ~0.7 ms through ``execute_batch``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import hiredis
from redis._parsers import _AsyncHiredisParser
from redis._parsers import hiredis as _hiredis_parsers
from redis.connection import HiredisRespSerializer
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

if TYPE_CHECKING:
    from redis.asyncio import Redis


#: What redis-py's hiredis reader returns while a reply is incomplete (``False`` in older redis-py).
_NOT_ENOUGH_DATA = getattr(_hiredis_parsers, "NOT_ENOUGH_DATA", False)


_SERIALIZER = HiredisRespSerializer()


class HiredisPacking:
    """Mixin for a redis-py asyncio ``Connection`` class: ``pack_command`` via hiredis."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # The common case straight to hiredis: redis-py's serializer first copies every
        # argument through a buffer check, which doubles the cost of a 200-id XACK
        # (``bench_core.py``). Anything else (a command name with spaces or as bytes, buffer
        # arguments, types redis-py refuses) is the serializer's.
        head = args[0]
        if type(head) is str and " " not in head:
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass
        packed: list[bytes] = _SERIALIZER.pack(*args)
        return packed


async def read_replies(conn: Any, count: int) -> list[Any]:
    """The next ``count`` replies of a connection, in order; error replies as
    ``ResponseError`` objects (returned, not raised, so that every reply of a batch is read).

    With redis-py's hiredis parser (what ``connect_redis`` gets), replies come straight from
    its ``hiredis.Reader``, fed from the socket until ``count`` are complete; with any other
    parser, one ``read_response`` per reply.
    """
    parser: Any = conn._parser
    if not isinstance(parser, _AsyncHiredisParser):
        return [await _one_reply(conn) for _ in range(count)]
    if not parser._connected:
        raise RedisConnectionError("connection closed before the replies were read")
    reader: Any = parser._reader
    replies: list[Any] = []
    append = replies.append
    while len(replies) < count:
        reply = reader.gets()
        if reply is _NOT_ENOUGH_DATA:
            await parser.read_from_socket()  # type: ignore[no-untyped-call]
            continue
        if isinstance(reply, RedisConnectionError):
            raise reply
        append(reply)
    return replies


async def _one_reply(conn: Any) -> Any:
    try:
        return await conn.read_response()
    except ResponseError as exc:
        return exc


async def execute_batch(redis: Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Run ``commands`` in one round trip (not a transaction: each runs on its own, in order)
    and return their replies; raise the first error reply, after reading all of them.

    Like redis-py's non-transactional pipeline, minus its per-command overhead, and retried
    like it: a connection error closes the connection and the whole batch is sent again under
    the client's retry policy (``connect_redis``: jittered backoff). A connection whose reading
    fails or is cancelled half-way is closed, never reused with replies still unread.
    """
    if not commands:
        return []
    pool = redis.connection_pool
    conn: Any = await pool.get_connection()  # type: ignore[no-untyped-call]
    pack = conn.pack_command
    # (hiredis packs a command into one chunk; redis-py's own packer may give several)
    packed = b"".join([chunk for c in commands for chunk in pack(*c)])

    async def send_and_read() -> list[Any]:
        try:
            await conn.send_packed_command(packed)
            replies: list[Any] = await read_replies(conn, len(commands))
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        return replies

    async def closed(_error: Exception) -> None:
        """(``send_and_read`` has already closed the connection; the retry reconnects.)"""

    try:
        replies: list[Any] = await conn.retry.call_with_retry(send_and_read, closed)
    finally:
        await pool.release(conn)
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


_PACKED: dict[type, type] = {}


def with_hiredis_packing(connection_class: type) -> type:
    """``connection_class`` (TCP, TLS or unix socket) with ``HiredisPacking`` mixed in."""
    if issubclass(connection_class, HiredisPacking):
        return connection_class
    packed = _PACKED.get(connection_class)
    if packed is None:
        packed = type(f"Hiredis{connection_class.__name__}", (HiredisPacking, connection_class),
                      {})
        _PACKED[connection_class] = packed
    return packed
