"""Settling pending entries for ``StreamConsumer``: taking over those idle too long (XAUTOCLAIM,
with their delivery counts), and what goes to the dead-letter stream instead.

An entry claimed after more than ``max_deliveries`` deliveries, or whose fields are gone (it
was deleted from the stream while pending), is dead-lettered rather than processed; so are the
ids XAUTOCLAIM reports deleted or trimmed, with empty fields. A dead-lettered entry is copied
to the dead-letter stream (capped near ``DEAD_LETTER_MAXLEN``) with the reason, and
acknowledged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio.cluster import RedisCluster

from orchestrator.bus.housekeeping import id_order
from orchestrator.bus.packing import execute_batch
from orchestrator.bus.wire import Batch, Entry, Redis, dead_letter_fields, text

DEAD_LETTER_MAXLEN = 100_000

#: The reason of an id XAUTOCLAIM reports deleted (or trimmed) while pending.
DELETED_BEFORE_ACK = "entry was deleted or trimmed from the stream before it was acknowledged"


def autoclaim_parts(reply: Any) -> tuple[str, Any, list[str]]:
    """An XAUTOCLAIM reply's next cursor, claimed messages and ids deleted while pending (a
    third part only Redis 7 sends)."""
    cursor, messages = reply[0], reply[1]
    deleted = reply[2] if len(reply) > 2 else []
    return text(cursor), messages, [text(entry_id) for entry_id in deleted]


async def with_deliveries(redis: Redis, stream: str, group: str, consumer: str,
                          messages: Any) -> list[Entry]:
    """The claimed ``messages`` of ``stream`` as entries, fields decoded, each with its
    delivery count (one XPENDING per entry, all in one round trip; none without messages)."""
    if not messages:
        return []
    pipe = redis.pipeline(transaction=False)
    for entry_id, _fields in messages:
        pipe.xpending_range(stream, group, entry_id, entry_id, 1, consumer)
    counts: list[Any] = await pipe.execute()
    entries: list[Entry] = []
    for (entry_id, fields), pending in zip(messages, counts, strict=True):
        deliveries = int(pending[0]["times_delivered"]) if pending else 1
        decoded = {text(k): text(v) for k, v in fields.items()} if fields else {}
        entries.append(Entry(stream, text(entry_id), decoded, deliveries))
    return entries


def unclaimable(entry: Entry, max_deliveries: int) -> str | None:
    """Why a claimed entry is dead-lettered rather than processed; None: process it."""
    if not entry.fields:
        return "entry was deleted from the stream while pending"
    if entry.deliveries > max_deliveries:
        return (f"delivered {entry.deliveries} times (max {max_deliveries}) "
                "without being acknowledged")
    return None


def note_newest(returned: dict[str, str], stream: str, entries: Sequence[Entry]) -> None:
    """Raise ``returned[stream]`` (the last id returned of ``stream``, on a cluster) to the
    newest of ``entries`` (claimed from ``stream``; at least one) if that is newer."""
    newest = max(entries, key=lambda e: id_order(e.id)).id
    last = returned.get(stream)
    if last is None or id_order(newest) > id_order(last):
        returned[stream] = newest


async def copy_and_ack(redis: Redis, entry: Entry, reason: str, *, group: str, consumer: str,
                       dead_letter: str | None) -> None:
    """Copy the entry and the reason to the ``dead_letter`` stream (when there is one) and
    acknowledge it: in MULTI; on a cluster, where the two keys are in different slots, the
    copy first, then the acknowledgement (a crash between them leaves a copy and a pending
    entry, never neither)."""
    if isinstance(redis, RedisCluster):
        await execute_batch(redis, _dead_letter_batch(entry, reason, group, consumer,
                                                      dead_letter))
        return
    pipe = redis.pipeline(transaction=True)
    if dead_letter is not None:
        fields = dead_letter_fields(entry, reason, group, consumer)
        pipe.xadd(dead_letter, fields,  # type: ignore[arg-type]
                  maxlen=DEAD_LETTER_MAXLEN, approximate=True)
    pipe.xack(entry.stream, group, entry.id)
    await pipe.execute()


def _dead_letter_batch(entry: Entry, reason: str, group: str, consumer: str,
                       dead_letter: str | None) -> Batch:
    batch: Batch = []
    if dead_letter is not None:
        fields = dead_letter_fields(entry, reason, group, consumer)
        batch.append(("XADD", dead_letter, "MAXLEN", "~", DEAD_LETTER_MAXLEN,
                      "*", *(part for pair in fields.items() for part in pair)))
    batch.append(("XACK", entry.stream, group, entry.id))
    return batch


__all__ = [
    "DEAD_LETTER_MAXLEN",
    "DELETED_BEFORE_ACK",
    "autoclaim_parts",
    "copy_and_ack",
    "note_newest",
    "unclaimable",
    "with_deliveries",
]
