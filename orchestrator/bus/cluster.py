"""The bus on Redis Cluster: round trips grouped by node.

On a cluster each command goes to the primary that holds its key's slot, and a command with
several keys must keep them in one slot. The bus's keys are hash-tagged so that holds
(:mod:`orchestrator.bus.keys`), but a *batch* — the daemon's commit (commands to many workers,
updates, XACKs on several event shards), a worker's outbox (events of many jobs) — spans
slots and nodes. ``execute_on_cluster`` (what ``execute_batch`` does on a cluster) groups the
batch by node and sends one pipeline per node, all nodes at once: one round trip per node,
in parallel.

Order. On one node the commands run in the batch's order. Across nodes there is no order,
with one exception the daemon relies on: an XACK must not land before the writes it
acknowledges (a crash in between would lose the commands of acknowledged entries). So a batch
is sent in *waves*, split where an XACK follows another command: the daemon's commit
(XADDs, then XACKs) takes two round trips per node, a worker's outbox (XADDs only) one.

Redirections (MOVED, TRYAGAIN, CLUSTERDOWN; ASK while a slot migrates, which is waited out
rather than followed with ASKING) and connection errors mean the slot map changed or a node
is away: the client re-reads the slot map and sends again what did not run
(a few times, then the error is raised as a connection error, which callers retry). A caller
that then sends the whole batch again repeats what had run on the other nodes, as after a lost
reply on a single node: the daemon dedupes events on ``event_id``, workers dedupe starts on
``run_id``.

``read_first`` is the consumer's blocking read over streams on different slots: one blocking
XREADGROUP per stream, concurrently, and the first that returns entries cancels the others
(their connections are closed, so no reply is read half-way; see ``StreamConsumer``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import anyio
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from orchestrator.bus.resp import pack_commands
from orchestrator.bus.retry import backoff_delay

#: ``redis+cluster://host:port`` (``rediss+cluster://`` with TLS): a cluster, reached through
#: any of its nodes.
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")

_ATTEMPTS = 4
_REDIRECTS = (AskError, TryAgainError, ClusterDownError)  # MovedError is an AskError
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, BusyLoadingError, ConnectionError,
                TimeoutError, OSError)


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def node_url(url: str) -> str:
    """The plain ``redis://`` (``rediss://``) URL of a cluster URL's node."""
    return url.replace("+cluster://", "://", 1) if is_cluster_url(url) else url


def command_key(command: tuple[Any, ...]) -> Any:
    """The key that routes ``command``: its first argument, or the first stream of an
    XREAD/XREADGROUP (the bus sends no other multi-key command in a batch)."""
    name = command[0]
    upper = (name.decode() if isinstance(name, bytes) else str(name)).upper()
    if upper in ("XREADGROUP", "XREAD"):
        for i, arg in enumerate(command):
            if isinstance(arg, str | bytes) and str(arg if isinstance(arg, str)
                                                    else arg.decode()).upper() == "STREAMS":
                return command[i + 1]
    return command[1]


def waves(commands: Sequence[tuple[Any, ...]]) -> list[list[int]]:
    """The indexes of ``commands`` in waves: a new wave starts where an XACK follows another
    command."""
    result: list[list[int]] = []
    previous_ack = True
    for i, command in enumerate(commands):
        name = command[0]
        is_ack = (name.decode() if isinstance(name, bytes) else str(name)).upper() == "XACK"
        if not result or (is_ack and not previous_ack):
            result.append([])
        result[-1].append(i)
        previous_ack = is_ack
    return result


def node_of(cluster: RedisCluster, command: tuple[Any, ...]) -> ClusterNode:
    """The primary that serves ``command``'s key now."""
    return cluster.nodes_manager.get_node_from_slot(cluster.keyslot(command_key(command)))


def pack_each(cluster: RedisCluster, commands: Sequence[tuple[Any, ...]]) -> list[bytes]:
    """Each command's RESP bytes, packed before anything is sent: an argument redis-py
    refuses (``DataError``) sends nothing, and a wave sent again is not packed again."""
    node = cluster.get_default_node()
    conn: Any = node.acquire_connection()  # for its packer (its encoder) only
    node.release(conn)
    return [pack_commands((command,), conn.pack_command) for command in commands]


async def send_to_node(node: ClusterNode, packed: Sequence[bytes]) -> list[Any]:
    """Packed commands in one round trip on one of ``node``'s connections; error replies are
    returned in place (as exceptions), connection errors raised."""
    conn: Any = node.acquire_connection()
    try:
        await conn.send_packed_command(b"".join(packed))
        replies: list[Any] = []
        for _ in packed:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
        return replies
    finally:
        node.release(conn)  # redis-py closed it if sending or reading broke off


async def execute_on_cluster(cluster: RedisCluster, commands: Sequence[tuple[Any, ...]]
                             ) -> list[Any]:
    """``execute_batch`` on a cluster: one pipeline per node and wave (see the module)."""
    await cluster.initialize()
    packed = pack_each(cluster, commands)
    replies: list[Any] = [None] * len(commands)
    for wave in waves(commands):
        await _run_wave(cluster, commands, packed, wave, replies)
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies


async def _run_wave(cluster: RedisCluster, commands: Sequence[tuple[Any, ...]],
                    packed: Sequence[bytes], wave: list[int], replies: list[Any]) -> None:
    """Send the wave; then again only what did not run (a lost node's commands, redirected
    ones), so that what ran on the other nodes is not repeated."""
    pending = wave
    for attempt in range(_ATTEMPTS):
        by_node: dict[ClusterNode, list[int]] = {}
        for i in pending:
            by_node.setdefault(node_of(cluster, commands[i]), []).append(i)
        failures: list[Exception] = []
        unsent: list[int] = []

        async def run(node: ClusterNode, indexes: list[int],
                      failures: list[Exception] = failures, unsent: list[int] = unsent) -> None:
            try:
                got = await send_to_node(node, [packed[i] for i in indexes])
            except _UNREACHABLE as exc:
                failures.append(exc)
                unsent.extend(indexes)
                return
            for i, reply in zip(indexes, got, strict=True):
                replies[i] = reply

        async with anyio.create_task_group() as tg:
            for node, indexes in by_node.items():
                tg.start_soon(run, node, indexes)
        redirected = [i for i in pending if i not in unsent
                      and isinstance(replies[i], _REDIRECTS)]
        failures += [replies[i] for i in redirected]
        pending = sorted(unsent + redirected)
        if not pending:
            return
        if attempt + 1 == _ATTEMPTS:
            raise RedisConnectionError(f"Redis Cluster unavailable: {failures[0]}")
        await anyio.sleep(backoff_delay(attempt, base_s=0.05, cap_s=1.0))
        await refresh_slots(cluster)


async def refresh_slots(cluster: RedisCluster) -> None:
    """Re-read the slot map (after a redirection or a lost node); a failure is left for the
    next attempt."""
    with contextlib.suppress(*_UNREACHABLE):
        await cluster.nodes_manager.initialize()


async def read_first(cluster: RedisCluster, commands: Sequence[tuple[Any, ...]]
                     ) -> tuple[dict[int, Any], list[int]]:
    """Send each (blocking) command on its own connection, concurrently; once one returns a
    non-empty reply, cancel the others. Returns the replies by index and the indexes that
    were cut off while waiting. An error (connection or reply) is raised after the others
    have been cancelled."""
    await cluster.initialize()
    packed = pack_each(cluster, commands)
    replies: dict[int, Any] = {}
    errors: list[Exception] = []

    async def one(i: int, scope: anyio.CancelScope) -> None:
        try:
            [reply] = await send_to_node(node_of(cluster, commands[i]), [packed[i]])
        except _UNREACHABLE as exc:
            errors.append(exc)
            scope.cancel()
            return
        replies[i] = reply
        if reply:  # (an exception in the reply is truthy too)
            scope.cancel()

    async with anyio.create_task_group() as tg:
        for i in range(len(commands)):
            tg.start_soon(one, i, tg.cancel_scope)
    for reply in replies.values():
        if isinstance(reply, _REDIRECTS):
            await refresh_slots(cluster)
            raise RedisConnectionError(f"Redis Cluster slot map changed: {reply}")
        if isinstance(reply, ResponseError):
            raise reply
    if errors:
        await refresh_slots(cluster)
        raise errors[0]
    return replies, [i for i in range(len(commands)) if i not in replies]


__all__ = [
    "CLUSTER_SCHEMES",
    "command_key",
    "execute_on_cluster",
    "is_cluster_url",
    "node_of",
    "node_url",
    "read_first",
    "send_to_node",
    "waves",
]
