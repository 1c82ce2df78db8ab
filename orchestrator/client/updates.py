"""Tailing the daemon's updates stream from a remembered position, for live views that resume.

Why this exists beside :class:`orchestrator.watch.follow.Follower`: a web page (the dashboard's
server-sent events) must resume where *it* left off — the browser sends back the last entry
id it saw — rather than where the stream ends now, and must learn when that position fell off
the stream (the daemon caps it, ``MAXLEN ~ 10 000``) so it can reload instead of silently
missing changes. Notes are what :func:`orchestrator.watch.follow.parse_update` makes of an
entry (with ``entry_id``); an empty batch means the block timed out (time for a keep-alive).
Every Redis failure is ``BusUnavailableError`` with the driver's one-line gist (no URL, no
password), so a caller may say so and start again from its last position.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from orchestrator.errors import BusUnavailableError, PermanentError, error_gist
from orchestrator.watch.follow import (
    READ_COUNT,
    StreamTail,
    parse_update,
    stream_entries,
    xread_entries,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

ENTRY_ID = re.compile(r"^[0-9]{1,20}-[0-9]{1,20}$")
"""A stream entry id as Redis writes it (``<ms>-<seq>``)."""

START = "0-0"
"""The position before the first entry (an empty stream's position)."""


class UpdatesTrimmedError(PermanentError):
    """The position asked for is older than the updates stream's first entry: notes after it
    were trimmed away, so a view resuming from there must reload its state instead."""


def entry_key(entry_id: str) -> tuple[int, int]:
    """An entry id as a comparable pair; ``PermanentError`` if it is not one."""
    if not ENTRY_ID.match(entry_id):
        raise PermanentError(f"not a stream entry id: {entry_id[:40]!r}")
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


async def position(redis: Redis, stream: str) -> str:
    """The id of the stream's last entry, ``"0-0"`` when it is empty or absent."""
    try:
        rows = stream_entries(await redis.xrevrange(stream, count=1))
    except Exception as exc:
        raise BusUnavailableError(error_gist(exc)) from exc
    return rows[0][0] if rows else START


async def trimmed(redis: Redis, stream: str, after: str) -> bool:
    """Whether notes after ``after`` may have been trimmed from the stream: ``after`` is older
    than its first entry (for ``"0-0"``: whether anything was ever removed from it). Redis
    does not record trimmed ids, so an ``after`` that was itself the last entry trimmed counts
    as trimmed too — a needless reload, never a missed change."""
    wanted = entry_key(after)
    try:
        info: Any = await redis.xinfo_stream(stream)
    except Exception as exc:
        if "no such key" in str(exc).lower():
            return False
        raise BusUnavailableError(error_gist(exc)) from exc
    info = {_text(k): v for k, v in dict(info).items()}
    length = int(info.get("length") or 0)
    if after == START:
        return int(info.get("entries-added") or length) > length
    first = info.get("first-entry")
    if not first:
        return False
    return wanted < entry_key(_text(first[0]))


async def recent(redis: Redis, stream: str, *, job_id: str | None = None, count: int = 20
                 ) -> list[dict[str, Any]]:
    """The last ``count`` notes (of ``job_id``, among the stream's newest 2000), oldest
    first."""
    try:
        return await StreamTail(redis, stream, job_id=job_id).recent(count)
    except Exception as exc:
        raise BusUnavailableError(error_gist(exc)) from exc


async def batches(redis: Redis, stream: str, *, after: str, job_id: str | None = None,
                  block_ms: int = 1000) -> AsyncIterator[list[dict[str, Any]]]:
    """Batches of notes after ``after`` (of ``job_id`` only, when given), forever; an empty
    batch when ``block_ms`` passed without one. ``UpdatesTrimmedError`` first if ``after``
    fell off the stream."""
    if await trimmed(redis, stream, after):
        raise UpdatesTrimmedError(f"updates after {after} were trimmed from {stream}")
    last = after
    while True:
        try:
            reply = await redis.xread({stream: last}, count=READ_COUNT, block=block_ms)
        except Exception as exc:
            raise BusUnavailableError(error_gist(exc)) from exc
        batch: list[dict[str, Any]] = []
        for entry_id, fields in xread_entries(reply):
            last = entry_id
            note = parse_update(entry_id, fields)
            if job_id is None or note.get("job_id") == job_id:
                batch.append(note)
        yield batch


__all__ = ["START", "UpdatesTrimmedError", "batches", "entry_key", "position", "recent",
           "trimmed"]
