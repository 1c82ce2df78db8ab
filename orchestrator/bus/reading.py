"""A consumer group's reads as ``StreamConsumer`` sends them: creating the group, XREADGROUP
(the command, its reply as the server sent it, a refusal) and one read of a group over several
streams on Redis Cluster.

On a cluster the streams of one consumer always live in different slots, and XREADGROUP
cannot span slots. ``read_cluster`` then reads each stream with its own XREADGROUP: first
without blocking, all streams at once (one round trip per node); only if all are empty,
blocking on every stream concurrently (:func:`orchestrator.bus.cluster.read_first`), where
the first that returns entries cancels the others. It returns the streams whose read was cut
off that way: Redis may have served them already, which the consumer makes good (see
:mod:`orchestrator.bus.consumer`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from orchestrator.bus.cluster import read_first
from orchestrator.bus.packing import execute_batch
from orchestrator.bus.wire import Entry, Redis, entries_of_reply
from orchestrator.errors import BusError


async def create_group(redis: Redis, stream: str, group: str) -> bool:
    """Create ``group`` on ``stream`` from id 0, creating the stream; False if it existed
    (BUSYGROUP)."""
    try:
        await redis.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
        return False
    return True


def unless_nogroup(exc: ResponseError, command: str) -> None:
    """Raise ``BusError`` for a refusal other than NOGROUP (a lost group is recreated)."""
    if "NOGROUP" not in str(exc):
        raise BusError(f"{command} refused: {exc}") from exc


def xreadgroup_args(streams: Mapping[str, str], block: int | None, *, group: str,
                    consumer: str, count: int) -> tuple[Any, ...]:
    """XREADGROUP of ``streams`` (name: id to read after) for ``consumer`` of ``group``.

    The command name goes as bytes, which redis-py has no response callback for, so it does
    not first rebuild the reply into its own tuples and dicts (whose shape also varies with
    the protocol and redis-py's ``legacy_responses``): ``entries_of_reply`` reads the reply
    as the server sent it.
    """
    args: list[Any] = [b"XREADGROUP", "GROUP", group, consumer, "COUNT", count]
    if block is not None:
        args += ["BLOCK", block]
    args += ["STREAMS", *streams.keys(), *streams.values()]
    return tuple(args)


async def read_group(redis: Redis, streams: Mapping[str, str], block: int | None, *,
                     group: str, consumer: str, count: int, deliveries: int = 1
                     ) -> list[Entry]:
    """One XREADGROUP (``xreadgroup_args``), its entries with ``deliveries`` filled in."""
    args = xreadgroup_args(streams, block, group=group, consumer=consumer, count=count)
    return entries_of_reply(await redis.execute_command(*args), deliveries)


async def read_cluster(cluster: RedisCluster, streams: Mapping[str, str], block: int | None,
                       *, group: str, consumer: str, count: int, deliveries: int
                       ) -> tuple[list[Entry], list[str]]:
    """One XREADGROUP per stream (see the module): without blocking first, all streams in
    one round trip per node; then, with ``block``, blocking on each concurrently. (One
    stream with ``block`` is one blocking read: nothing to cut off.) Returns the entries and
    the streams whose blocking read was cut off."""
    if block is None or len(streams) > 1:
        commands = [xreadgroup_args({stream: cursor}, None, group=group, consumer=consumer,
                                    count=count)
                    for stream, cursor in streams.items()]
        replies = await execute_batch(cluster, commands)
        entries = [e for reply in replies for e in entries_of_reply(reply, deliveries)]
        if entries or block is None:
            return entries, []
    blocking = [xreadgroup_args({stream: cursor}, block, group=group, consumer=consumer,
                                count=count)
                for stream, cursor in streams.items()]
    names = list(streams)
    got, cut_off = await read_first(cluster, blocking)
    return ([e for i in sorted(got) for e in entries_of_reply(got[i], deliveries)],
            [names[i] for i in cut_off])


__all__ = ["create_group", "read_cluster", "read_group", "unless_nogroup", "xreadgroup_args"]
