"""``execute_batch``: many commands in one round trip, for the daemon's commit.

On Redis Cluster it sends one pipeline per node instead (``orchestrator.bus.cluster``). On one
node it is a non-transactional pipeline built from public parts: the commands packed by
``hiredis.pack_command`` into one write, sent with the pooled connection's
``send_packed_command`` and answered by one ``read_response`` per command. redis-py's own
``Pipeline`` does the same round trip but queues, packs and parses every command through
several Python layers, and its asyncio connections pack with a pure-Python packer that
re-joins the buffer once per argument (a 200-id XACK is the slow case); on a commit of a few
hundred XADDs that is several times the CPU (``bench/bench_daemon.py`` prints both).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from orchestrator.bus.cluster import execute_on_cluster
from orchestrator.bus.resp import pack_commands

if TYPE_CHECKING:
    from orchestrator.bus.wire import Redis


async def execute_batch(redis: Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Run ``commands`` in one round trip (not a transaction: each runs on its own, in order)
    and return their replies; raise the first error reply, after reading all of them.

    Retried like redis-py's own commands: a connection error closes the connection and the
    whole batch is sent again under the client's retry policy (``connect_redis``: jittered
    backoff). A connection whose sending or reading fails or is cancelled half-way is closed
    by redis-py, never reused with replies still unread.
    """
    if not commands:
        return []
    if isinstance(redis, RedisCluster):
        return await execute_on_cluster(redis, commands)
    pool = redis.connection_pool
    conn: Any = await pool.get_connection()  # type: ignore[no-untyped-call]
    packed = pack_commands(commands, conn.pack_command)

    async def send_and_read() -> list[Any]:
        await conn.send_packed_command(packed)
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:  # an error reply: the connection is still in step
                replies.append(exc)
        return replies

    async def on_error(_error: Exception) -> None:
        """Nothing to undo: redis-py closed the connection; the retry reconnects it."""

    try:
        replies: list[Any] = await conn.retry.call_with_retry(send_and_read, on_error)
    finally:
        await pool.release(conn)
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


__all__ = ["execute_batch", "pack_commands"]
