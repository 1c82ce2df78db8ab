"""Rejections: an entry that cannot be applied is recorded with its reason, then dead-lettered.

Recorded in the store first (``rejections``: what operators list), then copied to the
dead-letter stream with the reason and acknowledged, so it is never read again and never
vanishes silently. One bad entry is rejected alone: the rest of its batch goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from orchestrator.bus import Entry, StreamConsumer
from orchestrator.core import Event
from orchestrator.daemon.retry import Retrier
from orchestrator.daemon.stats import Stats, utcnow
from orchestrator.logs import get_logger
from orchestrator.store import JobStore, Rejection

log = get_logger("orchestrator.daemon")


@dataclass(frozen=True, slots=True)
class Refusal:
    entry: Entry
    kind: str
    reason: str
    job_id: str | None = None
    payload: str = ""
    #: The parsed event, when the entry held one that is refused as a forgery (it is then
    #: recorded among the refused events too).
    event: Event | None = None


async def reject(refusals: Sequence[Refusal], *, store: JobStore, consumer: StreamConsumer,
                 retry: Retrier, stats: Stats) -> None:
    """Record every refusal (one store write), then dead-letter each entry."""
    if not refusals:
        return
    now = utcnow()
    rows = [Rejection(at=now, source=r.entry.stream, entry_id=r.entry.id, kind=r.kind,
                      reason=r.reason, job_id=r.job_id, payload_excerpt=r.payload[:2048])
            for r in refusals]
    await retry(lambda: store.record_rejections(rows), "record rejections")
    for r in refusals:
        await retry(partial(consumer.dead_letter, r.entry, f"{r.kind}: {r.reason}"),
                    "dead-letter")
        stats.rejections += 1
        stats.rejected_by_kind[r.kind] += 1
        log.warning("input rejected", kind=r.kind, reason=r.reason, job_id=r.job_id,
                    stream=r.entry.stream, entry_id=r.entry.id)
