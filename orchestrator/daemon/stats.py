"""The daemon's counters, for logs, tests and the benchmark."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Stats:
    """Counters; each task adds to its own."""

    batches: int = 0
    events_seen: int = 0
    events_applied: int = 0
    events_ignored: int = 0
    entries_acked: int = 0  # by commits (not counting dead letters)
    status_changes: int = 0
    submissions_accepted: int = 0
    submissions_duplicate: int = 0
    rejections: int = 0
    #: Events refused as not authentic (no or bad MAC, no run, a daemon-only type on the bus).
    events_refused: int = 0
    dispatched: int = 0
    deadlines_fired: int = 0
    commands_sent: int = 0
    cas_retries: int = 0
    transient_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
