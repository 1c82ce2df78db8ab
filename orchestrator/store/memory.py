"""In-memory job store: the twin of ``MongoJobStore`` for tests and benchmarks.

Every operation completes without awaiting in the middle, so each is atomic on the event
loop, exactly like one single-document Mongo operation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from orchestrator.core import (
    ACTIVE,
    CheckpointRecord,
    HistoryEntry,
    Job,
    JobStatus,
    MetricRecord,
)
from orchestrator.store.base import JobStore, Rejection, checkpoint_doc, metric_doc


class MemoryJobStore(JobStore):
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.by_key: dict[str, str] = {}
        self.metric_rows: dict[str, dict[str, Any]] = {}
        self.checkpoint_rows: dict[str, dict[str, Any]] = {}
        self.rejection_rows: list[Rejection] = []
        self.round_trips = 0

    async def ensure_indexes(self) -> None:
        return None

    async def _insert(self, job: Job) -> Job | None:
        self.round_trips += 1
        if job.id in self.jobs:
            return self.jobs[job.id]
        if job.idempotency_key is not None and job.idempotency_key in self.by_key:
            return self.jobs[self.by_key[job.idempotency_key]]
        self.jobs[job.id] = job
        if job.idempotency_key is not None:
            self.by_key[job.idempotency_key] = job.id
        return None

    async def _load_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        self.round_trips += 1
        return {i: self.jobs[i] for i in job_ids if i in self.jobs}

    async def _cas_many(self, writes: Sequence[tuple[Job, int]]) -> set[str]:
        self.round_trips += 1
        lost: set[str] = set()
        for job, expected in writes:
            stored = self.jobs.get(job.id)
            if stored is None or stored.version != expected:
                lost.add(job.id)
            else:
                self.jobs[job.id] = job
        return lost

    async def _upsert_records(
        self, metrics: Sequence[MetricRecord], checkpoints: Sequence[CheckpointRecord]
    ) -> None:
        self.round_trips += 1
        for m in metrics:
            doc = metric_doc(m)
            self.metric_rows[doc["_id"]] = doc
        for c in checkpoints:
            doc = checkpoint_doc(c)
            previous = self.checkpoint_rows.get(doc["_id"])
            doc["final"] = doc["final"] or bool(previous and previous["final"])  # sticky
            self.checkpoint_rows[doc["_id"]] = doc

    async def _set_fields(
        self,
        job_id: str,
        fields: dict[str, Any],
        allowed_from: Iterable[JobStatus] | None = None,
        push_history: HistoryEntry | None = None,
    ) -> Job | None:
        self.round_trips += 1
        job = self.jobs.get(job_id)
        if job is None or (allowed_from is not None and job.status not in set(allowed_from)):
            return None
        doc = job.to_document()
        for path, value in fields.items():
            target = doc
            *parents, leaf = path.split(".")
            for part in parents:
                target = target[part]
            target[leaf] = value
        if push_history is not None:
            doc["history"].append(push_history.model_dump())
        doc["version"] += 1
        updated = Job.from_document(doc)
        self.jobs[job_id] = updated
        return updated

    async def find_by_status(
        self, status: JobStatus | None = None, limit: int = 50, skip: int = 0
    ) -> list[Job]:
        self.round_trips += 1
        jobs = [j for j in self.jobs.values() if status is None or j.status is status]
        jobs.sort(key=lambda j: (j.created_at, j.id), reverse=True)
        return jobs[skip : skip + limit]

    async def find_due(self, now: datetime, limit: int = 500) -> list[Job]:
        self.round_trips += 1
        due = [
            j
            for j in self.jobs.values()
            if j.status in ACTIVE and j.deadline_at is not None and j.deadline_at <= now
        ]
        due.sort(key=lambda j: j.deadline_at or now)
        return due[:limit]

    async def find_active(self, status: JobStatus, limit: int = 1000, skip: int = 0) -> list[Job]:
        self.round_trips += 1
        jobs = sorted(
            (j for j in self.jobs.values() if j.status is status),
            key=lambda j: (j.created_at, j.id),
        )
        return jobs[skip : skip + limit]

    async def metrics(self, job_id: str) -> list[dict[str, Any]]:
        rows = [r for r in self.metric_rows.values() if r["job_id"] == job_id]
        return sorted(rows, key=lambda r: (r["round"], r["participant"]))

    async def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        rows = [r for r in self.checkpoint_rows.values() if r["job_id"] == job_id]
        return sorted(rows, key=lambda r: (r["round"], r["participant"]))

    async def record_rejection(self, rejection: Rejection) -> None:
        self.rejection_rows.append(rejection)

    async def rejections(self, limit: int = 100, job_id: str | None = None) -> list[Rejection]:
        rows = reversed(self.rejection_rows)
        return [r for r in rows if job_id is None or r.job_id == job_id][:limit]
