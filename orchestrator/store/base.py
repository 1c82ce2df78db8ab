"""The job-store port and the bookkeeping every backend shares.

Backends implement only the hooks (``_insert``, ``_load_many``, ``_cas_many``,
``_upsert_records`` and the queries); the read → decide → compare-and-set → retry loop lives
here, once. A batch costs one load, one records upsert (when there are records) and one
bulk CAS write, whatever its size; a lost race re-reads and re-applies only the losers.
"""

from __future__ import annotations

import abc
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import anyio
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.core import (
    CheckpointRecord,
    Command,
    Event,
    HistoryEntry,
    Job,
    JobStatus,
    MetricRecord,
    decide,
)
from orchestrator.core._types import UtcDatetime, fast_tuple, set_in_place
from orchestrator.errors import ConflictError, JobNotFoundError, PermanentError

MAX_CAS_ATTEMPTS = 64
CAS_BACKOFF_MAX_S = 0.05


class Rejection(BaseModel):
    """A submission or event that could not be accepted, with the reason (never dropped)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: UtcDatetime
    source: str  # e.g. the stream name
    entry_id: str | None = None
    kind: str  # not_json, invalid_spec, oversize, unknown_workload, duplicate_job, ...
    reason: str
    job_id: str | None = None
    payload_excerpt: str = Field(default="", max_length=2048)


class EventOutcome(NamedTuple):  # one per event on the hot path: a tuple is cheapest
    event_id: str
    job_id: str
    applied: bool
    reason: str


class Change(NamedTuple):
    """One job changed by a batch: before and after, the reason of its last applied event,
    and ``quiet`` when only liveness or metrics changed (nothing a watcher is told about)."""

    before: Job
    after: Job
    reason: str
    quiet: bool


@dataclass(slots=True)
class BatchResult:
    """What one ``apply_batch`` did: outcomes per event, commands to send, changed jobs."""

    outcomes: list[EventOutcome] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)
    cas_retries: int = 0


class JobStore(abc.ABC):
    """Port for job persistence. See ``MongoJobStore`` and ``MemoryJobStore``."""

    #: Database round trips made so far (for benchmarks and tests of batching).
    round_trips: int = 0

    # --- hooks -------------------------------------------------------------------------
    @abc.abstractmethod
    async def ensure_indexes(self) -> None: ...

    @abc.abstractmethod
    async def _insert(self, job: Job) -> Job | None:
        """Insert; on a duplicate id or idempotency key return the existing job instead."""

    @abc.abstractmethod
    async def _load_many(self, job_ids: Sequence[str]) -> dict[str, Job]: ...

    @abc.abstractmethod
    async def _cas_many(self, writes: Sequence[tuple[Job, int]]) -> set[str]:
        """Write each job if its stored version still equals the int; return ids that lost."""

    @abc.abstractmethod
    async def _upsert_records(
        self, metrics: Sequence[MetricRecord], checkpoints: Sequence[CheckpointRecord]
    ) -> None: ...

    @abc.abstractmethod
    async def find_by_status(
        self, status: JobStatus | None = None, limit: int = 50, skip: int = 0
    ) -> list[Job]:
        """Jobs newest first, optionally of one status."""

    @abc.abstractmethod
    async def find_due(self, now: datetime, limit: int = 500) -> list[Job]:
        """Non-terminal jobs whose earliest deadline has passed (indexed query)."""

    @abc.abstractmethod
    async def find_active(self, status: JobStatus, limit: int = 1000, skip: int = 0) -> list[Job]:
        """Jobs of an active status, oldest first (admission order, reconciliation)."""

    @abc.abstractmethod
    async def metrics(self, job_id: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def checkpoints(self, job_id: str) -> list[dict[str, Any]]: ...

    @abc.abstractmethod
    async def record_rejection(self, rejection: Rejection) -> None: ...

    @abc.abstractmethod
    async def rejections(self, limit: int = 100, job_id: str | None = None) -> list[Rejection]:
        """Recorded rejections, newest first; only those naming ``job_id`` when given."""

    @abc.abstractmethod
    async def _set_fields(
        self,
        job_id: str,
        fields: dict[str, Any],
        allowed_from: Iterable[JobStatus] | None = None,
        push_history: HistoryEntry | None = None,
    ) -> Job | None:
        """One atomic update of some fields (and ``version`` + 1); None if the guard failed."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections (no-op by default)."""

    # --- shared operations ---------------------------------------------------------------
    async def create(self, job: Job) -> tuple[Job, bool]:
        """Create a job; idempotent on job id and on idempotency key. Returns (job, created)."""
        existing = await self._insert(job)
        return (job, True) if existing is None else (existing, False)

    async def find_by_id(self, job_id: str) -> Job | None:
        return (await self._load_many([job_id])).get(job_id)

    async def get(self, job_id: str) -> Job:
        job = await self.find_by_id(job_id)
        if job is None:
            raise JobNotFoundError(f"no job with id {job_id!r}")
        return job

    async def find_by_ids(self, job_ids: Sequence[str]) -> dict[str, Job]:
        return await self._load_many(list(dict.fromkeys(job_ids)))

    async def apply(self, event: Event, now: datetime) -> BatchResult:
        return await self.apply_batch([event], now)

    async def apply_batch(self, events: Sequence[Event], now: datetime) -> BatchResult:
        """Apply events (grouped by job, in order) with one CAS write per changed job."""
        by_job: dict[str, list[Event]] = {}
        for event in events:
            by_job.setdefault(event.job_id, []).append(event)
        result = BatchResult()
        jobs = await self._load_many(list(by_job))
        pending = by_job
        for attempt in range(MAX_CAS_ATTEMPTS):
            writes: list[tuple[Job, int]] = []
            metrics: list[MetricRecord] = []
            checkpoints: list[CheckpointRecord] = []
            outcomes: list[EventOutcome] = []
            commands: list[Command] = []
            changes: list[Change] = []
            for job_id, job_events in pending.items():
                before = jobs.get(job_id)
                if before is None:
                    result.outcomes.extend(
                        EventOutcome(e.event_id, job_id, False, f"unknown job {job_id}")
                        for e in job_events
                    )
                    continue
                current = before
                quiet = True
                last_reason = ""
                for event in job_events:
                    # (unpacked once: a Decision's fields are read several times each)
                    current, changed, reason, d_commands, d_metrics, d_checkpoints, d_quiet = (
                        decide(current, event, now))
                    applied = changed or bool(d_metrics) or bool(d_checkpoints)  # .applied
                    outcomes.append(fast_tuple(EventOutcome,
                                               (event.event_id, job_id, applied, reason)))
                    if applied:
                        last_reason = reason
                        if changed:
                            quiet = quiet and d_quiet
                    if d_commands:
                        commands.extend(d_commands)
                    if d_metrics:
                        metrics.extend(d_metrics)
                    if d_checkpoints:
                        checkpoints.extend(d_checkpoints)
                if current is not before:
                    # ``current`` was made by ``decide`` in this loop (``evolve``) and is ours
                    # alone: stamp the version in place rather than copying the job once more.
                    set_in_place(current, "version", before.version + 1)
                    writes.append((current, before.version))
                    changes.append(fast_tuple(Change, (before, current, last_reason or "updated",
                                                       quiet)))
            if metrics or checkpoints:  # records first: the manifest is durable before status
                await self._upsert_records(metrics, checkpoints)
            lost = await self._cas_many(writes) if writes else set()
            if lost:  # the losers' outcomes and commands are dropped; they are decided again
                outcomes = [o for o in outcomes if o.job_id not in lost]
                commands = [c for c in commands if c.job_id not in lost]
                changes = [c for c in changes if c.after.id not in lost]
            result.outcomes.extend(outcomes)
            result.commands.extend(commands)
            result.changed.extend(changes)
            if not lost:
                return result
            result.cas_retries += len(lost)
            pending = {job_id: by_job[job_id] for job_id in lost}
            # Jittered backoff desynchronises rivals that keep colliding on one hot job.
            await anyio.sleep(random.uniform(0, min(CAS_BACKOFF_MAX_S, 0.0005 * 2**attempt)))
            jobs = await self._load_many(list(lost))
        raise ConflictError(f"compare-and-set lost {MAX_CAS_ATTEMPTS} times for {sorted(pending)}")

    # --- the seed's direct operations ------------------------------------------------------
    async def set_status(
        self,
        job_id: str,
        status: JobStatus,
        *,
        allowed_from: Iterable[JobStatus],
        reason: str,
        event_id: str,
        now: datetime,
    ) -> Job:
        """Guarded status change: only from ``allowed_from``, never out of a FINISHED state."""
        allowed = [s for s in allowed_from if not s.is_terminal]
        if not allowed:
            raise PermanentError("set_status: no non-terminal prior status allowed")
        current = await self.get(job_id)
        fields: dict[str, Any] = {"status": status.value, "updated_at": now}
        if status.is_terminal:
            fields |= {"finished_at": now, "phase": "done"}
        entry = HistoryEntry(
            from_status=current.status, to_status=status, at=now, event_id=event_id, reason=reason
        )
        job = await self._set_fields(job_id, fields, allowed_from=allowed, push_history=entry)
        if job is None:
            latest = await self.get(job_id)
            raise PermanentError(
                f"refused: job {job_id} is {latest.status}, not one of "
                f"{[s.value for s in allowed]}; {status} not set"
            )
        return job

    async def set_uuids(self, job_id: str, run_ids: dict[str, str], now: datetime) -> Job:
        """Set every participant's run id in one atomic update."""
        job = await self.get(job_id)
        unknown = sorted(set(run_ids) - set(job.participants))
        if unknown:
            raise PermanentError(f"set_uuids: unknown participants {unknown} in job {job_id}")
        fields: dict[str, Any] = {f"participants.{p}.run_id": r for p, r in run_ids.items()}
        fields["updated_at"] = now
        updated = await self._set_fields(job_id, fields)
        if updated is None:
            raise JobNotFoundError(f"no job with id {job_id!r}")
        return updated

    async def set_server_metrics(
        self, job_id: str, round_: int, metrics: dict[str, float], now: datetime
    ) -> None:
        await self._set_participant_metrics(job_id, "server", round_, metrics, now)

    async def set_client_metrics(
        self, job_id: str, participant: str, round_: int, metrics: dict[str, float], now: datetime
    ) -> None:
        await self._set_participant_metrics(job_id, participant, round_, metrics, now)

    async def _set_participant_metrics(
        self, job_id: str, participant: str, round_: int, metrics: dict[str, float], now: datetime
    ) -> None:
        job = await self.get(job_id)
        p = job.participants.get(participant)
        if p is None:
            raise PermanentError(f"{participant} is not a participant of job {job_id}")
        await self._upsert_records(
            [MetricRecord(job_id, participant, p.role, round_, metrics, now, f"direct-{now}")], []
        )
        if p.metrics_round is None or round_ >= p.metrics_round:
            await self._set_fields(
                job_id,
                {
                    f"participants.{participant}.metrics": metrics,
                    f"participants.{participant}.metrics_round": round_,
                    "updated_at": now,
                },
            )


def metric_id(job_id: str, participant: str, round_: int) -> str:
    return f"{job_id}:{participant}:{round_}"


def checkpoint_id(job_id: str, round_: int, participant: str) -> str:
    return f"{job_id}:{round_}:{participant}"


def metric_doc(m: MetricRecord) -> dict[str, Any]:
    job_id, participant, role, round_, metrics, at, event_id = m  # (one unpack: hot path)
    return {
        "_id": metric_id(job_id, participant, round_),
        "job_id": job_id,
        "participant": participant,
        "role": role.value,
        "round": round_,
        "metrics": metrics,
        "at": at,
        "event_id": event_id,
    }


def checkpoint_doc(c: CheckpointRecord) -> dict[str, Any]:
    return {
        "_id": checkpoint_id(c.job_id, c.round, c.participant),
        "job_id": c.job_id,
        "participant": c.participant,
        "round": c.round,
        "key": c.key,
        "size": c.size,
        "sha256": c.sha256,
        "parent": c.parent,
        "final": c.final,
        "at": c.at,
        "event_id": c.event_id,
    }
