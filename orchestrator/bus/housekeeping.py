"""Stream housekeeping: what a consumer group still holds, and trimming that never passes it."""

from __future__ import annotations

from collections.abc import Iterable

from redis.exceptions import ResponseError

from orchestrator.bus.wire import Redis, text


async def pending_count(redis: Redis, streams: Iterable[str], group: str) -> int:
    """Entries read by ``group`` but not yet acknowledged, over ``streams`` (a stream without
    the group counts 0)."""
    total = 0
    for stream in streams:
        try:
            summary = await redis.xpending(stream, group)
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                continue
            raise
        total += int(summary["pending"])
    return total


async def trim_streams(redis: Redis, streams: Iterable[str], maxlen: int) -> int:
    """Trim each stream longer than ``maxlen`` down to its ``trim_floor``; returns the number
    of entries removed.

    XTRIM MINID with ``~`` removes only whole nodes below the floor, so it removes less than
    it could (the stream may stay longer than ``maxlen``), never more.
    """
    removed = 0
    for stream in streams:
        if await redis.xlen(stream) <= maxlen:
            continue
        floor = await trim_floor(redis, stream)
        if floor is None:
            continue
        removed += int(await redis.xtrim(stream, minid=floor, approximate=True))
    return removed


async def trim_floor(redis: Redis, stream: str) -> str | None:
    """The oldest id any consumer group of ``stream`` still needs (None: no groups).

    Over every group of the stream: its oldest pending id, or (with nothing pending) the
    first id after its last delivered one.
    """
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError:
        return None
    if not groups:
        return None
    floors: list[tuple[int, int]] = []
    for group in groups:
        if int(group["pending"]) > 0:
            summary = await redis.xpending(stream, group["name"])
            floors.append(id_order(text(summary["min"])))
        else:
            ms, seq = id_order(text(group["last-delivered-id"]))
            floors.append((ms, seq + 1))
    ms, seq = min(floors)
    return f"{ms}-{seq}"


def id_order(entry_id: str) -> tuple[int, int]:
    """A stream entry id as (ms, seq), for comparing ids."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


__all__ = ["id_order", "pending_count", "trim_floor", "trim_streams"]
