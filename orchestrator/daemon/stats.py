"""The daemon's counters, for logs, tests, the benchmark and ``/metrics``.

Plain ints (and a few ``Counter`` maps and :class:`~orchestrator.health.counters.Buckets`
for the labelled series), bumped once per batch or per rare event; the metrics endpoint reads
them when scraped (``orchestrator.health.daemon``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime

from orchestrator.core import HistoryEntry, Job, JobStatus
from orchestrator.core.status import ErrorCode
from orchestrator.health.counters import BATCH_SIZES, LATENCY_S, Buckets


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
    #: Status changes by (the rule that made it, from, to, error code of a failed job);
    #: labelled when scraped
    #: (:meth:`transition_counts`).
    transitions: dict[tuple[str, JobStatus | None, JobStatus, ErrorCode | None], int] = field(
        default_factory=dict)
    #: Refused events by the kind of refusal (``no MAC``, ``bad MAC``, ...).
    refused_by_reason: Counter[str] = field(default_factory=Counter)
    #: Rejected (recorded and dead-lettered) entries by kind (``not_json``, ...).
    rejected_by_kind: Counter[str] = field(default_factory=Counter)
    #: Entries acknowledged per commit (one commit per batch read).
    batch_sizes: Buckets = field(default_factory=lambda: Buckets(BATCH_SIZES))
    #: Seconds to send one commit (commands, updates, XACK) to Redis, retries included.
    commit_seconds: Buckets = field(default_factory=lambda: Buckets(LATENCY_S))

    def as_dict(self) -> dict[str, int]:
        """The plain counters (for the log line of a stopping daemon)."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if isinstance(getattr(self, f.name), int)}

    def note_transition(self, entry: HistoryEntry, job: Job) -> None:
        """Count one status change (a dict update keyed by enums: cheap on the hot path)."""
        self.status_changes += 1
        to = entry.to_status
        code = (job.error.code if to is JobStatus.FINISHED_WITH_ERROR and job.error is not None
                else None)
        key = (entry.rule or "unknown", entry.from_status, to, code)
        self.transitions[key] = self.transitions.get(key, 0) + 1

    def transition_counts(self) -> Counter[tuple[str, str, str, str]]:
        """Status changes by (rule, cause, from, to) label values: the state machine's rule
        that made the change, and :func:`transition_cause`."""
        counts: Counter[tuple[str, str, str, str]] = Counter()
        for (rule, frm, to, code), n in list(self.transitions.items()):
            counts[(rule, transition_cause(to, code),
                    frm.value if frm else "none", to.value)] += n
        return counts

    def note_refused(self, reasons: Iterable[str]) -> None:
        for reason in reasons:
            self.events_refused += 1
            self.refused_by_reason[refusal_kind(reason)] += 1


def transition_cause(to: JobStatus, code: ErrorCode | None) -> str:
    """A bounded label for why a job changed status: the error code of a failed job
    (``workload_failed``, ``worker_lost``, ``timed_out``, ...), else what the new status means.
    (The rule that made the change is a label of its own.)"""
    if to is JobStatus.FINISHED_WITH_ERROR:
        return code.value if code is not None else "error"
    return _CAUSES.get(to, to.value.lower())


_CAUSES = {JobStatus.NOT_STARTED: "submitted", JobStatus.IN_PROGRESS: "dispatched",
           JobStatus.FINISHED_SUCCESSFULLY: "succeeded", JobStatus.FINISHED_CANCELLED: "cancelled"}


def refusal_kind(reason: str) -> str:
    """``refused: bad MAC (...)`` -> ``bad MAC``: the reason up to its first detail, so the
    label stays one of a few values."""
    text = reason.removeprefix("refused:").strip()
    for stop in (":", "(", ";", ","):
        text = text.split(stop, 1)[0]
    return text.strip()[:40] or "unknown"
