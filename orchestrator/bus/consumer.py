"""A reliable reader of one consumer group over several Redis streams.

Theory of operation
-------------------
*Delivery is at least once.* A ``StreamConsumer`` reads with XREADGROUP; an entry stays in the
group's pending list (PEL) until ``ack`` (after the durable write) or ``dead_letter`` (after it
was found unprocessable). On start a consumer first drains *its own* pending entries (id ``0``)
— what it had read but not acknowledged before it died — then reads new ones (``>``) with
BLOCK. Entries left pending by a consumer that never came back are taken over by
``reclaim`` (XAUTOCLAIM, idle above ``reclaim_idle_ms``); one delivered more than
``max_deliveries`` times goes to the dead-letter stream with the reason and is acknowledged.
Entries that were deleted or trimmed while pending are dead-lettered too (with empty fields),
so nothing leaves the PEL silently. A lost group (NOGROUP, e.g. Redis restarted without its
data) is recreated from id ``0`` so whatever is still in the stream is read again; consumers
dedupe on the producer's ``event_id``, never on the entry id.

On Redis Cluster (``orchestrator.bus.cluster``) the streams of one consumer may live on
different nodes and always live in different slots, and XREADGROUP cannot span slots. The
consumer then reads each stream with its own XREADGROUP (``orchestrator.bus.reading``): first
without blocking, all streams at once (one round trip per node); only if all are empty,
blocking on every stream concurrently, where the first that returns entries cancels the
others. A read cut off that way may have been served by Redis already (entries delivered to
us whose reply was never read), so the consumer then re-reads its own pending entries of that
stream *after the last id it returned* (a history read, as on start): nothing is lost and
nothing returned twice.

What ``reclaim`` claims and what it dead-letters instead is in ``orchestrator.bus.reclaim``.
Connection errors are retried with backoff by ``read``; the other methods raise
``BusUnavailableError`` (transient) and callers retry. Trimming (``trim``) uses XTRIM MINID
at the oldest entry some group still needs, so it never passes a pending entry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import anyio
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from orchestrator.bus.housekeeping import pending_count, trim_streams
from orchestrator.bus.packing import execute_batch
from orchestrator.bus.reading import create_group, read_cluster, read_group, unless_nogroup
from orchestrator.bus.reclaim import (
    DEAD_LETTER_MAXLEN,
    DELETED_BEFORE_ACK,
    autoclaim_parts,
    copy_and_ack,
    note_newest,
    unclaimable,
    with_deliveries,
)
from orchestrator.bus.retry import Backoff
from orchestrator.bus.wire import TRANSIENT_REDIS_ERRORS, Batch, Entry, Redis, translated
from orchestrator.logs import get_logger

T = TypeVar("T")

_log = get_logger("orchestrator.bus")


class StreamConsumer:
    """A reliable reader of one consumer group over several streams.

    ``read`` never raises for connection trouble (it waits and retries with backoff) and
    recreates the group on NOGROUP. Give each replica a *stable* ``consumer`` name, so that
    after a restart it drains what it had read but not acknowledged.
    """

    def __init__(
        self,
        redis: Redis,
        streams: Sequence[str],
        group: str,
        consumer: str,
        *,
        batch: int = 100,
        block_ms: int = 1000,
        max_deliveries: int = 5,
        reclaim_idle_ms: int = 30_000,
        dead_letter: str | None = None,
    ) -> None:
        if not streams:
            raise ValueError("a consumer needs at least one stream")
        self.redis = redis
        self.streams = list(dict.fromkeys(streams))
        self.group = group
        self.consumer = consumer
        self.batch = batch
        self.block_ms = block_ms
        self.max_deliveries = max_deliveries
        self.reclaim_idle_ms = reclaim_idle_ms
        self.dead_letter_stream = dead_letter
        # Where the drain of our own pending entries stands per stream (None: drained).
        self._history: dict[str, str | None] = dict.fromkeys(self.streams, "0")
        self._reclaim_cursor: dict[str, str] = dict.fromkeys(self.streams, "0-0")
        self._new_only: dict[str, str] = dict.fromkeys(self.streams, ">")
        self._backoff = Backoff()
        #: On a cluster: the client, and the last id returned per stream (see the module).
        self._cluster = redis if isinstance(redis, RedisCluster) else None
        self._returned: dict[str, str] = {}
        self._log = _log.bind(group=group, consumer=consumer)
        #: Counters, for tests and the bench.
        self.groups_recreated = 0
        self.dead_lettered = 0

    # --- groups ----------------------------------------------------------------------------
    async def ensure_groups(self) -> None:
        """Create the group on every stream (from id 0, creating the stream); BUSYGROUP is ok."""
        async with translated("XGROUP CREATE"):
            for stream in self.streams:
                await create_group(self.redis, stream, self.group)

    async def _recreate_groups(self) -> None:
        created = 0
        for stream in self.streams:
            created += await create_group(self.redis, stream, self.group)
        if created:
            self.groups_recreated += created
            self._log.warning("consumer group recreated after NOGROUP", created=created)
        # A new group has an empty PEL: the drain of our own pending entries starts over.
        self.rewind()

    def rewind(self) -> None:
        """Re-drain this consumer's own pending entries on the next ``read``."""
        self._history = dict.fromkeys(self.streams, "0")

    @property
    def draining(self) -> bool:
        """True while this consumer still reads its own pending entries (history)."""
        return any(cursor is not None for cursor in self._history.values())

    # --- reading ---------------------------------------------------------------------------
    async def read(self) -> list[Entry]:
        """The next batch: own pending entries first (no blocking), then new ones (BLOCK).

        Returns ``[]`` when BLOCK expired with nothing new. Entries that were deleted from the
        stream while pending come back with empty ``fields``; the caller dead-letters them.
        """
        while True:
            try:
                entries = await self._read_once()
            except ResponseError as exc:
                unless_nogroup(exc, "XREADGROUP")
                await self._with_retry(self._recreate_groups)
                continue
            except TRANSIENT_REDIS_ERRORS as exc:
                delay = self._backoff.next()
                self._log.warning("redis unavailable, retrying read", error=str(exc),
                                  retry_in_s=round(delay, 2))
                await anyio.sleep(delay)
                continue
            self._backoff.reset()
            return entries

    async def _read_once(self) -> list[Entry]:
        history = {s: cursor for s, cursor in self._history.items() if cursor is not None}
        if history:
            entries = await self._read_group(history, None, deliveries=2)
            seen: set[str] = set()
            for entry in entries:
                self._history[entry.stream] = entry.id
                seen.add(entry.stream)
            for stream in history:
                if stream not in seen:
                    self._history[stream] = None
            if entries:
                return entries
        return await self._read_group(self._new_only, self.block_ms)

    async def _read_group(self, streams: Mapping[str, str], block: int | None,
                          deliveries: int = 1) -> list[Entry]:
        if self._cluster is None:
            return await read_group(self.redis, streams, block, group=self.group,
                                    consumer=self.consumer, count=self.batch,
                                    deliveries=deliveries)
        try:
            entries, cut_off = await read_cluster(
                self._cluster, streams, block, group=self.group, consumer=self.consumer,
                count=self.batch, deliveries=deliveries)
        except BaseException:  # the nodes that answered may have delivered entries to us
            self._reread_after_returned(streams)
            raise
        self._reread_after_returned(cut_off)
        self._returned.update((entry.stream, entry.id) for entry in entries)
        return entries

    def _reread_after_returned(self, streams: Iterable[str]) -> None:
        """Read our pending entries of ``streams`` past the last id returned, on the next read
        (a read of theirs was cut off or failed on some node: Redis may have delivered
        entries to us whose reply we never read)."""
        for stream in streams:
            if self._history.get(stream) is None:
                self._history[stream] = self._returned.get(stream, "0")

    # --- acknowledging ---------------------------------------------------------------------
    def queue_ack(self, batch: Batch, entries: Iterable[Entry]) -> None:
        """Add one XACK per stream (with every id) to a batch."""
        for stream, ids in _ids_by_stream(entries).items():
            batch.append(("XACK", stream, self.group, *ids))

    async def ack(self, entries: Sequence[Entry]) -> None:
        """Acknowledge entries: one XACK per stream, all in one round trip."""
        if not entries:
            return
        batch: Batch = []
        self.queue_ack(batch, entries)
        async with translated("XACK"):
            await execute_batch(self.redis, batch)

    async def dead_letter(self, entry: Entry, reason: str) -> None:
        """Copy the entry and the reason to the dead-letter stream and acknowledge it (MULTI;
        on a cluster, where the two keys are in different slots, the copy first, then the
        acknowledgement: a crash between them leaves a copy and a pending entry, never
        neither; ``orchestrator.bus.reclaim.copy_and_ack``)."""
        async with translated("dead-letter"):
            await copy_and_ack(self.redis, entry, reason, group=self.group,
                               consumer=self.consumer, dead_letter=self.dead_letter_stream)
        self.dead_lettered += 1
        self._log.warning("entry dead-lettered", stream=entry.stream, entry_id=entry.id,
                          reason=reason, deliveries=entry.deliveries)

    # --- taking over from dead consumers ------------------------------------------------------
    async def reclaim(self) -> list[Entry]:
        """Claim entries idle longer than ``reclaim_idle_ms`` (any consumer's, ours included).

        Entries delivered more than ``max_deliveries`` times are dead-lettered (and acked);
        ids that were deleted or trimmed while pending are dead-lettered with empty fields.
        Returns the claimed entries to process, ``deliveries`` filled in.
        """
        claimed: list[Entry] = []
        try:
            for stream in self.streams:
                claimed.extend(await self._reclaim_stream(stream))
        except ResponseError as exc:
            unless_nogroup(exc, "XAUTOCLAIM")
            await self._with_retry(self._recreate_groups)
        except TRANSIENT_REDIS_ERRORS as exc:
            self._log.warning("redis unavailable during reclaim", error=str(exc))
        return claimed

    async def _reclaim_stream(self, stream: str) -> list[Entry]:
        start = self._reclaim_cursor[stream]
        reply = await self.redis.xautoclaim(
            stream, self.group, self.consumer, self.reclaim_idle_ms, start, count=self.batch
        )
        cursor, messages, deleted = autoclaim_parts(reply)
        self._reclaim_cursor[stream] = cursor
        for entry_id in deleted:
            await self.dead_letter(Entry(stream, entry_id, {}, 0), DELETED_BEFORE_ACK)
        result: list[Entry] = []
        for entry in await with_deliveries(self.redis, stream, self.group, self.consumer,
                                           messages):
            reason = unclaimable(entry, self.max_deliveries)
            if reason is None:
                result.append(entry)
            else:
                await self.dead_letter(entry, reason)
        if result and self._cluster is not None:
            note_newest(self._returned, stream, result)
        if result:
            self._log.info("reclaimed pending entries", stream=stream, count=len(result))
        return result

    # --- housekeeping ------------------------------------------------------------------------
    async def pending_count(self) -> int:
        """Entries read by the group but not yet acknowledged, over all streams."""
        async with translated("XPENDING"):
            return await pending_count(self.redis, self.streams, self.group)

    async def trim(self, maxlen: int) -> int:
        """Trim streams longer than ``maxlen``, never past an entry some group still needs
        (``trim_floor``). Returns the number of entries removed."""
        async with translated("XTRIM"):
            return await trim_streams(self.redis, self.streams, maxlen)

    async def _with_retry(self, op: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                result = await op()
            except TRANSIENT_REDIS_ERRORS as exc:
                self._log.warning("redis unavailable, retrying", error=str(exc))
                await self._backoff.sleep()
                continue
            self._backoff.reset()
            return result


def _ids_by_stream(entries: Iterable[Entry]) -> dict[str, list[str]]:
    by_stream: dict[str, list[str]] = {}
    for entry in entries:
        by_stream.setdefault(entry.stream, []).append(entry.id)
    return by_stream


__all__ = ["DEAD_LETTER_MAXLEN", "StreamConsumer"]
