"""Parking: ``checkpoint.saved`` entries the object store could not vouch for yet.

The events handler parks the entry of every event the verifier deferred
(:mod:`orchestrator.daemon.verify`) and leaves it unacknowledged; :class:`Parked` hands the
entries back to the handler, through its own input stream, until they verify, and keeps the
reclaim pass off them meanwhile. A daemon that stops keeps nothing: the entries are still
pending in Redis, to be read again by the next daemon.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio
from anyio.abc import ObjectSendStream

from orchestrator.bus import Entry, StreamConsumer
from orchestrator.daemon.waits import sleep_unless
from orchestrator.logs import get_logger

log = get_logger("orchestrator.daemon.parking")


class Parked:
    """Entries whose checkpoint could not be verified yet.

    They are handed back to the events handler (through its input stream) after ``retry_s``,
    then less often (doubling to ``retry_max_s``) while they keep coming back. Meanwhile they
    stay pending in Redis, and ``hold`` (an XCLAIM JUSTID to this consumer: it resets their
    idle time without counting a delivery) runs every ``tick_s`` — keep it below the reclaim
    idle time — so that the reclaim pass neither hands them out again nor dead-letters them
    for their delivery count. An entry parked for ``release_after_s`` is let go: left to the
    reclaim pass, which dead-letters it with its reason after ``max_deliveries``. At most
    ``limit`` entries are held (more are left to the reclaim pass at once).
    """

    def __init__(self, *, hold: Hold | None = None, retry_s: float = 1.0,
                 retry_max_s: float = 8.0, tick_s: float = 0.5, release_after_s: float = 600.0,
                 limit: int = 10_000) -> None:
        self.hold = hold
        self.retry_s = retry_s
        self.retry_max_s = max(retry_s, retry_max_s)
        self.tick_s = min(tick_s, retry_s)
        self.release_after_s = release_after_s
        self.limit = limit
        self._entries: dict[tuple[str, str], Entry] = {}
        self._since: dict[tuple[str, str], float] = {}
        self._delay = retry_s
        self._due = 0.0
        #: Entries let go after ``release_after_s`` (for logs and tests).
        self.released = 0

    def __len__(self) -> int:
        return len(self._entries)

    def park(self, entries: Sequence[Entry]) -> None:
        now = anyio.current_time()
        if not self._entries:
            self._due = now + self._delay
        for entry in entries:
            ident = (entry.stream, entry.id)
            if ident in self._entries or len(self._entries) < self.limit:
                self._entries[ident] = entry
                self._since.setdefault(ident, now)

    async def run(self, batches: ObjectSendStream[list[Entry]], stopping: anyio.Event) -> None:
        """Hold and hand back parked entries until ``stopping``; then close ``batches``."""
        async with batches:
            while not stopping.is_set():
                await sleep_unless(stopping, self.tick_s)
                if stopping.is_set() or not self._entries:
                    if not self._entries:
                        self._delay = self.retry_s
                    continue
                self._release_old()
                if self.hold is not None and self._entries:
                    await self.hold(list(self._entries.values()))
                if self._entries and anyio.current_time() >= self._due:
                    # what the handler did not park again since the last hand-back verified
                    self._since = {i: t for i, t in self._since.items() if i in self._entries}
                    entries = list(self._entries.values())
                    self._entries.clear()
                    self._delay = min(self._delay * 2, self.retry_max_s)
                    self._due = anyio.current_time() + self._delay
                    await batches.send(entries)

    def _release_old(self) -> None:
        cutoff = anyio.current_time() - self.release_after_s
        for ident in [i for i, t in self._since.items() if t < cutoff]:
            self._since.pop(ident)
            if self._entries.pop(ident, None) is not None:
                self.released += 1
                log.warning("checkpoint still not verifiable: its entry is left to the "
                            "reclaim pass", stream=ident[0], entry_id=ident[1],
                            parked_s=self.release_after_s)


Hold = Callable[[list[Entry]], Awaitable[None]]
"""Keeps parked entries from the reclaim pass (``claim_quietly`` with the events consumer)."""


async def claim_quietly(consumer: StreamConsumer, entries: list[Entry]) -> None:
    """XCLAIM JUSTID of ``entries`` to ``consumer`` (resets their idle time; the delivery
    count is not increased). Best effort: should Redis fail, the reclaim pass may take them."""
    by_stream: dict[str, list[str]] = {}
    for entry in entries:
        by_stream.setdefault(entry.stream, []).append(entry.id)
    try:
        for stream, ids in by_stream.items():
            await consumer.redis.xclaim(stream, consumer.group, consumer.consumer, 0,
                                        list[Any](ids), justid=True)
    except Exception as exc:  # best effort: the entries stay pending anyway
        log.warning("could not hold parked entries", error=str(exc))
