"""In-memory job store: the twin of ``MongoJobStore`` for tests, the demo and benchmarks.

Every operation completes without awaiting in the middle, so each is atomic on the event
loop, like one Mongo operation. Jobs are indexed as in Mongo: by status (oldest first) and by
deadline (a heap, entries checked against the job when read), so queries never scan every
job ever stored.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from orchestrator.core import ACTIVE, CheckpointRecord, Job, JobStatus, MetricRecord
from orchestrator.store.port import (
    REFUSED_EVENTS_CAP,
    JobQuery,
    JobStore,
    JobWrite,
    RefusedEvent,
    Rejection,
    checkpoint_doc,
    metric_doc,
)


class MemoryJobStore(JobStore):
    def __init__(self, *, refused_cap: int = REFUSED_EVENTS_CAP) -> None:
        self.jobs: dict[str, Job] = {}
        self.by_key: dict[str, str] = {}
        #: status -> job ids in insertion order (the order jobs were created in)
        self.by_status: dict[JobStatus, dict[str, None]] = {s: {} for s in JobStatus}
        #: (deadline_at, job id) of every deadline ever set; stale ones are dropped when read
        self.deadlines: list[tuple[datetime, str]] = []
        self.metric_rows: dict[str, dict[str, Any]] = {}
        self.checkpoint_rows: dict[str, dict[str, Any]] = {}
        self.rejection_rows: list[Rejection] = []
        self.refused_rows: deque[RefusedEvent] = deque(maxlen=refused_cap)
        self.round_trips = 0

    async def ensure_indexes(self) -> None:
        return None

    def _index(self, job: Job, before: Job | None) -> None:
        if before is not None and before.status is not job.status:
            del self.by_status[before.status][job.id]
        self.by_status[job.status][job.id] = None
        if job.deadline_at is not None and job.status in ACTIVE and (
                before is None or before.deadline_at != job.deadline_at):
            heapq.heappush(self.deadlines, (job.deadline_at, job.id))

    async def insert_many(self, jobs: Sequence[Job]) -> list[Job | None]:
        self.round_trips += 1
        results: list[Job | None] = []
        for job in jobs:
            existing = self.jobs.get(job.id)
            if existing is None and job.idempotency_key is not None:
                holder = self.by_key.get(job.idempotency_key)
                existing = None if holder is None else self.jobs[holder]
            if existing is not None:
                results.append(existing)
                continue
            self.jobs[job.id] = job
            if job.idempotency_key is not None:
                self.by_key[job.idempotency_key] = job.id
            self._index(job, None)
            results.append(None)
        return results

    async def load_many(self, job_ids: Sequence[str], *, history: bool = True
                        ) -> dict[str, Job]:
        self.round_trips += 1
        return {i: self.jobs[i] for i in job_ids if i in self.jobs}

    async def cas_many(self, writes: Sequence[JobWrite]) -> set[str]:
        self.round_trips += 1
        lost: set[str] = set()
        for write in writes:
            job = write.job
            stored = self.jobs.get(job.id)
            if stored is None or stored.version != write.expected_version:
                lost.add(job.id)
                continue
            # The history is appended to the stored one (the writer may have loaded none).
            kept = replace(job, history=[*stored.history, *write.history])
            self.jobs[job.id] = kept
            self._index(kept, stored)
        return lost

    async def upsert_records(self, metrics: Sequence[MetricRecord],
                             checkpoints: Sequence[CheckpointRecord]) -> None:
        self.round_trips += 1
        for m in metrics:
            doc = metric_doc(m)
            self.metric_rows[doc["_id"]] = doc
        for c in checkpoints:
            doc = checkpoint_doc(c)
            previous = self.checkpoint_rows.get(doc["_id"])
            doc["final"] = doc["final"] or bool(previous and previous["final"])  # sticky
            self.checkpoint_rows[doc["_id"]] = doc

    async def find_by_status(self, status: JobStatus | None = None, limit: int = 50,
                             skip: int = 0) -> list[Job]:
        self.round_trips += 1
        ids = self.jobs if status is None else self.by_status[status]
        jobs = sorted((self.jobs[i] for i in ids), key=lambda j: (j.created_at, j.id),
                      reverse=True)
        return jobs[skip: skip + limit]

    async def find_jobs(self, query: JobQuery, limit: int = 50, skip: int = 0) -> list[Job]:
        self.round_trips += 1
        ids = self.jobs if query.status is None else self.by_status[query.status]
        jobs = sorted((j for j in (self.jobs[i] for i in ids) if query.matches(j)),
                      key=lambda j: (j.created_at, j.id), reverse=True)
        return jobs[skip: skip + limit]

    async def find_due(self, now: datetime, limit: int = 500) -> list[Job]:
        self.round_trips += 1
        found: dict[str, Job] = {}
        keep: list[tuple[datetime, str]] = []
        while self.deadlines and self.deadlines[0][0] <= now and len(found) < limit:
            at, job_id = heapq.heappop(self.deadlines)
            job = self.jobs[job_id]
            if job.status in ACTIVE and job.deadline_at == at and job_id not in found:
                found[job_id] = job
                keep.append((at, job_id))  # still armed until the job's deadline moves
        for entry in keep:
            heapq.heappush(self.deadlines, entry)
        return list(found.values())

    async def find_active(self, status: JobStatus, limit: int = 1000, skip: int = 0
                          ) -> list[Job]:
        self.round_trips += 1
        jobs = sorted((self.jobs[i] for i in self.by_status[status]),
                      key=lambda j: (j.created_at, j.id))
        return jobs[skip: skip + limit]

    async def metrics(self, job_id: str) -> list[dict[str, Any]]:
        rows = [r for r in self.metric_rows.values() if r["job_id"] == job_id]
        return sorted(rows, key=lambda r: (r["round"], r["participant"]))

    async def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        rows = [r for r in self.checkpoint_rows.values() if r["job_id"] == job_id]
        return sorted(rows, key=lambda r: (r["round"], r["participant"]))

    async def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        self.round_trips += 1
        self.rejection_rows.extend(rejections)

    async def rejections(self, limit: int = 100, job_id: str | None = None,
                         since: datetime | None = None) -> list[Rejection]:
        rows = reversed(self.rejection_rows)
        return [r for r in rows if (job_id is None or r.job_id == job_id)
                and (since is None or r.at >= since)][:limit]

    async def record_refused_events(self, rows: Sequence[RefusedEvent]) -> None:
        self.round_trips += 1
        self.refused_rows.extend(rows)

    async def refused_events(self, limit: int = 100, job_id: str | None = None
                             ) -> list[RefusedEvent]:
        rows = reversed(self.refused_rows)
        return [r for r in rows if job_id is None or r.job_id == job_id][:limit]
