"""The job-store port: storage verbs only, no domain logic.

A store loads, inserts and compare-and-sets jobs, upserts metrics and manifest rows, records
rejections and answers indexed queries. Deciding what changes is the core's business
(``orchestrator.core.decide``) and the read → decide → compare-and-set → retry loop is the
daemon's (``orchestrator.daemon.apply``). Writes are partial: a ``JobWrite`` names the
document paths a decision changed and the history entries to append, never a whole document.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core import CheckpointRecord, Decision, HistoryEntry, Job, JobStatus, MetricRecord
from orchestrator.core._types import UtcDatetime
from orchestrator.errors import JobNotFoundError


class Rejection(BaseModel):
    """A submission or event that could not be accepted, with the reason (never dropped)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: UtcDatetime
    source: str  # e.g. the stream name
    entry_id: str | None = None
    kind: str  # not_json, invalid_spec, oversize, too_deep, duplicate_job, ...
    reason: str
    job_id: str | None = None
    payload_excerpt: str = Field(default="", max_length=2048)


Short = Annotated[str, Field(max_length=256)]

#: How many refused events a store keeps (the oldest go first).
REFUSED_EVENTS_CAP = 10_000


class RefusedEvent(BaseModel):
    """An event the daemon refused as not authentic (no or a bad MAC, no run to check it
    against, or a daemon-only type on the bus), with what it claimed to be. Bounded: every
    field is short and a store keeps the newest ``REFUSED_EVENTS_CAP`` rows."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: UtcDatetime
    source: Short  # the stream it came from
    entry_id: Short | None = None
    reason: Short
    event_type: Short | None = None
    event_id: Short | None = None
    job_id: Short | None = None
    participant: Short | None = None
    worker: Short | None = None


@dataclass(frozen=True, slots=True)
class JobQuery:
    """Filters of :meth:`JobStore.find_jobs` (all optional, combined with AND). ``older_than``
    is a paging cursor: only jobs created before ``(created_at, id)`` in the newest-first
    order, so a page never repeats or skips a job while new ones arrive."""

    status: JobStatus | None = None
    workload: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    created_after: datetime | None = None
    created_before: datetime | None = None
    older_than: tuple[datetime, str] | None = None

    def matches(self, job: Job) -> bool:
        """The same filter in Python (the memory store's; tests)."""
        key = (job.created_at, job.id)
        return ((self.status is None or job.status is self.status)
                and (self.workload is None or job.spec.workload == self.workload)
                and all(job.spec.labels.get(k) == v for k, v in self.labels)
                and (self.created_after is None or job.created_at >= self.created_after)
                and (self.created_before is None or job.created_at < self.created_before)
                and (self.older_than is None or key < self.older_than))


@dataclass(frozen=True, slots=True)
class JobWrite:
    """One compare-and-set: write ``changed`` paths of ``job`` and append ``history`` if the
    stored version is still ``job.version - 1``."""

    job: Job
    changed: tuple[str, ...]
    history: tuple[HistoryEntry, ...] = ()

    @property
    def expected_version(self) -> int:
        return self.job.version - 1

    @classmethod
    def of(cls, decision: Decision) -> JobWrite:
        return cls(decision.job, decision.changed, decision.history)


class JobStore(abc.ABC):
    """What the daemon, the CLI and the watcher need from a job store. Backends implement the
    abstract verbs; ``create``, ``find_by_id`` and ``get`` are built on them."""

    #: Database round trips made so far (for benchmarks and tests of batching).
    round_trips: int = 0

    @abc.abstractmethod
    async def ensure_indexes(self) -> None: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (no-op by default)."""

    @abc.abstractmethod
    async def insert_many(self, jobs: Sequence[Job]) -> list[Job | None]:
        """Insert jobs; for each, None when it was created, or the job that already holds its
        id or idempotency key (then nothing was written for it)."""

    @abc.abstractmethod
    async def load_many(self, job_ids: Sequence[str], *, history: bool = True
                        ) -> dict[str, Job]:
        """The stored jobs among ``job_ids``. ``history=False`` may leave ``history`` empty
        (the daemon never reads it; writes append to the stored one)."""

    @abc.abstractmethod
    async def cas_many(self, writes: Sequence[JobWrite]) -> set[str]:
        """Apply each write whose expected version still holds; return the ids that lost."""

    @abc.abstractmethod
    async def upsert_records(self, metrics: Sequence[MetricRecord],
                             checkpoints: Sequence[CheckpointRecord]) -> None:
        """Metrics rows and manifest rows, idempotent (keyed by job, participant, round); a
        manifest row's ``final`` flag is sticky."""

    @abc.abstractmethod
    async def find_by_status(self, status: JobStatus | None = None, limit: int = 50,
                             skip: int = 0) -> list[Job]:
        """Jobs newest first, optionally of one status."""

    @abc.abstractmethod
    async def find_jobs(self, query: JobQuery, limit: int = 50, skip: int = 0) -> list[Job]:
        """Jobs matching ``query``, newest first (``created_at``, then id); indexed on status,
        workload and creation time."""

    @abc.abstractmethod
    async def find_due(self, now: datetime, limit: int = 500) -> list[Job]:
        """Non-terminal jobs whose earliest deadline has passed (indexed query)."""

    @abc.abstractmethod
    async def find_active(self, status: JobStatus, limit: int = 1000, skip: int = 0
                          ) -> list[Job]:
        """Jobs of an active status, oldest first (admission order, reconciliation)."""

    @abc.abstractmethod
    async def metrics(self, job_id: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def checkpoints(self, job_id: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def record_rejections(self, rejections: Sequence[Rejection]) -> None: ...

    @abc.abstractmethod
    async def rejections(self, limit: int = 100, job_id: str | None = None,
                         since: datetime | None = None) -> list[Rejection]:
        """Recorded rejections, newest first; only those naming ``job_id`` when given, and
        only those at or after ``since``."""

    @abc.abstractmethod
    async def record_refused_events(self, rows: Sequence[RefusedEvent]) -> None:
        """Record refused events; only the newest ``REFUSED_EVENTS_CAP`` are kept."""

    @abc.abstractmethod
    async def refused_events(self, limit: int = 100, job_id: str | None = None
                             ) -> list[RefusedEvent]:
        """Recorded refused events, newest first; only those claiming ``job_id`` when given."""

    # --- conveniences over the verbs ---------------------------------------------------------
    async def create(self, job: Job) -> tuple[Job, bool]:
        """Create one job; idempotent on job id and idempotency key. Returns (job, created)."""
        (existing,) = await self.insert_many([job])
        return (job, True) if existing is None else (existing, False)

    async def find_by_id(self, job_id: str) -> Job | None:
        return (await self.load_many([job_id])).get(job_id)

    async def get(self, job_id: str) -> Job:
        job = await self.find_by_id(job_id)
        if job is None:
            raise JobNotFoundError(f"no job with id {job_id!r}")
        return job

    async def record_rejection(self, rejection: Rejection) -> None:
        await self.record_rejections([rejection])


# --- row documents (shared by the backends) -------------------------------------------------------

def metric_id(job_id: str, participant: str, round_: int) -> str:
    return f"{job_id}:{participant}:{round_}"


def checkpoint_id(job_id: str, round_: int, participant: str) -> str:
    return f"{job_id}:{round_}:{participant}"


def metric_doc(m: MetricRecord) -> dict[str, Any]:
    return {"_id": metric_id(m.job_id, m.participant, m.round), "job_id": m.job_id,
            "participant": m.participant, "role": m.role.value, "round": m.round,
            "metrics": m.metrics, "at": m.at, "event_id": m.event_id}


def checkpoint_doc(c: CheckpointRecord) -> dict[str, Any]:
    return {"_id": checkpoint_id(c.job_id, c.round, c.participant), "job_id": c.job_id,
            "participant": c.participant, "round": c.round, "key": c.key, "size": c.size,
            "sha256": c.sha256, "parent": c.parent, "final": c.final, "at": c.at,
            "event_id": c.event_id}
