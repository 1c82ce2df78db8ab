"""MongoDB job store over PyMongo's async API (any Motor-compatible database object works).

Collections: ``jobs`` (one document per job, CAS on ``version``), ``metrics`` (one row per
job/participant/round), ``checkpoints`` (the manifest / model trail), ``rejections``,
``refused_events`` (kept to the newest ``refused_cap`` rows: trimmed after each insert, which
works on every MongoDB and the stand-in, unlike a capped collection).
Driver exceptions are translated into ``orchestrator.errors`` and never leak.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError

from orchestrator.core import (
    ACTIVE,
    HISTORY_ADAPTER,
    CheckpointRecord,
    Job,
    JobStatus,
    MetricRecord,
    document_value,
)
from orchestrator.errors import StoreError, StoreUnavailableError
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
from orchestrator.tls import NO_TLS_FILES, TLSFiles, mongo_tls_options

DUPLICATE_KEY = 11000
WRITE_TOKEN = "_w"  # unique per write: tells our CAS apart from a rival's at the same version


@asynccontextmanager
async def _translated(what: str) -> AsyncIterator[None]:
    try:
        yield
    except ConnectionFailure as exc:
        raise StoreUnavailableError(f"MongoDB unreachable during {what}: {exc}") from exc
    except PyMongoError as exc:
        raise StoreError(f"MongoDB error during {what}: {exc}") from exc


def _to_doc(job: Job, token: str | None = None) -> dict[str, Any]:
    doc = job.to_document()
    if doc.get("idempotency_key") is None:
        doc.pop("idempotency_key", None)  # sparse unique index: absent, not null
    if token is not None:
        doc[WRITE_TOKEN] = token
    return doc


def _update(write: JobWrite, token: str) -> dict[str, Any]:
    """``$set`` of the changed paths (and the write token), ``$push`` of new history."""
    job = write.job
    fields = {path: document_value(job, path) for path in write.changed}
    fields[WRITE_TOKEN] = token
    update: dict[str, Any] = {"$set": fields}
    if write.history:
        pushed = [HISTORY_ADAPTER.dump_python(h) for h in write.history]
        update["$push"] = {"history": {"$each": pushed}}
    return update


def _from_doc(doc: dict[str, Any]) -> Job:
    doc.pop(WRITE_TOKEN, None)
    return Job.from_document(doc)


class MongoJobStore(JobStore):
    """Job store on a Motor-compatible database (pymongo AsyncDatabase, motor, mongomock)."""

    def __init__(self, db: Any, *, client: Any = None,
                 refused_cap: int = REFUSED_EVENTS_CAP) -> None:
        self.db = db
        self.refused_cap = refused_cap
        self.refused_rows = db["refused_events"]
        self._client = client
        self.jobs = db["jobs"]
        self.metric_rows = db["metrics"]
        self.checkpoint_rows = db["checkpoints"]
        self.rejection_rows = db["rejections"]
        self.round_trips = 0

    async def ensure_indexes(self) -> None:
        async with _translated("ensure_indexes"):
            await self.jobs.create_index(
                [("idempotency_key", ASCENDING)], unique=True, sparse=True, name="idempotency_key"
            )
            await self.jobs.create_index(
                [("status", ASCENDING), ("deadline_at", ASCENDING)], name="status_deadline"
            )
            await self.jobs.create_index(
                [("status", ASCENDING), ("created_at", DESCENDING)], name="status_created"
            )
            await self.jobs.create_index([("created_at", DESCENDING)], name="created")
            await self.jobs.create_index(
                [("spec.workload", ASCENDING), ("created_at", DESCENDING)], name="workload_created"
            )
            await self.metric_rows.create_index(
                [("job_id", ASCENDING), ("round", ASCENDING)], name="job_round"
            )
            await self.checkpoint_rows.create_index(
                [("job_id", ASCENDING), ("round", ASCENDING)], name="job_round"
            )
            await self.rejection_rows.create_index([("at", DESCENDING)], name="at")
            await self.rejection_rows.create_index(
                [("job_id", ASCENDING), ("at", DESCENDING)], name="job_at"
            )
            await self.refused_rows.create_index([("at", DESCENDING)], name="at")
            await self.refused_rows.create_index(
                [("job_id", ASCENDING), ("at", DESCENDING)], name="job_at"
            )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def insert_many(self, jobs: Sequence[Job]) -> list[Job | None]:
        if not jobs:
            return []
        self.round_trips += 1
        async with _translated("insert jobs"):
            try:
                await self.jobs.insert_many([_to_doc(job) for job in jobs], ordered=False)
                return [None] * len(jobs)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                refused = [jobs[e["index"]] for e in errors]
            # The refused ones collided on the id or the idempotency key: find the holders.
            self.round_trips += 1
            ids = [job.id for job in refused]
            keys = [job.idempotency_key for job in refused if job.idempotency_key is not None]
            query: dict[str, Any] = {"_id": {"$in": ids}}
            if keys:
                query = {"$or": [query, {"idempotency_key": {"$in": keys}}]}
            holders = [_from_doc(d) for d in await self.jobs.find(query).to_list(None)]
        by_id = {h.id: h for h in holders}
        by_key = {h.idempotency_key: h for h in holders if h.idempotency_key is not None}
        refused_ids = set(ids)
        results: list[Job | None] = []
        for job in jobs:
            if job.id not in refused_ids:
                results.append(None)
                continue
            holder = by_id.get(job.id) or (
                by_key.get(job.idempotency_key) if job.idempotency_key is not None else None)
            if holder is None:  # the holder was deleted meanwhile: the caller may retry
                raise StoreError(f"job {job.id} collided with a job that no longer exists")
            results.append(holder)
        return results

    async def load_many(self, job_ids: Sequence[str], *, history: bool = True
                        ) -> dict[str, Job]:
        if not job_ids:
            return {}
        self.round_trips += 1
        ids = list(job_ids)
        query = {"_id": ids[0]} if len(ids) == 1 else {"_id": {"$in": ids}}
        async with _translated("load"):
            cursor = self.jobs.find(query, None if history else {"history": 0})
            docs = await cursor.to_list(None)
        if not history:
            for doc in docs:
                doc["history"] = []
        return {doc["_id"]: _from_doc(doc) for doc in docs}

    async def cas_many(self, writes: Sequence[JobWrite]) -> set[str]:
        if not writes:
            return set()
        token = uuid.uuid4().hex
        ops = [UpdateOne({"_id": w.job.id, "version": w.expected_version}, _update(w, token))
               for w in writes]
        self.round_trips += 1
        async with _translated("compare-and-set"):
            try:
                result = await self.jobs.bulk_write(ops, ordered=False)
                matched = result.matched_count
            except BulkWriteError as exc:
                matched = int(exc.details.get("nMatched", 0))
            if matched == len(ops):
                return set()
            # Some lost: ask which documents carry our write token.
            self.round_trips += 1
            ids = [w.job.id for w in writes]
            won = {d["_id"] async for d in
                   self.jobs.find({"_id": {"$in": ids}, WRITE_TOKEN: token}, {"_id": 1})}
        return set(ids) - won

    async def upsert_records(self, metrics: Sequence[MetricRecord],
                             checkpoints: Sequence[CheckpointRecord]) -> None:
        async with _translated("record metrics/checkpoints"):
            if metrics:
                self.round_trips += 1
                await self.metric_rows.bulk_write(
                    [ReplaceOne({"_id": d["_id"]}, d, upsert=True)
                     for d in map(metric_doc, metrics)], ordered=False)
            if checkpoints:
                self.round_trips += 1
                await self.checkpoint_rows.bulk_write(
                    [_checkpoint_upsert(d) for d in map(checkpoint_doc, checkpoints)],
                    ordered=False)

    async def _find(
        self, query: dict[str, Any], sort: list[tuple[str, int]], limit: int, skip: int = 0
    ) -> list[Job]:
        self.round_trips += 1
        async with _translated("query"):
            cursor = self.jobs.find(query).sort(sort).skip(skip).limit(limit)
            return [_from_doc(d) async for d in cursor]

    async def find_by_status(
        self, status: JobStatus | None = None, limit: int = 50, skip: int = 0
    ) -> list[Job]:
        query = {} if status is None else {"status": status.value}
        return await self._find(
            query, [("created_at", DESCENDING), ("_id", DESCENDING)], limit, skip
        )

    async def find_jobs(self, query: JobQuery, limit: int = 50, skip: int = 0) -> list[Job]:
        return await self._find(
            job_filter(query), [("created_at", DESCENDING), ("_id", DESCENDING)], limit, skip
        )

    async def find_due(self, now: datetime, limit: int = 500) -> list[Job]:
        query = {"status": {"$in": [s.value for s in ACTIVE]}, "deadline_at": {"$lte": now}}
        return await self._find(query, [("deadline_at", ASCENDING)], limit)

    async def find_active(self, status: JobStatus, limit: int = 1000, skip: int = 0) -> list[Job]:
        return await self._find(
            {"status": status.value}, [("created_at", ASCENDING), ("_id", ASCENDING)], limit, skip
        )

    async def metrics(self, job_id: str) -> list[dict[str, Any]]:
        async with _translated("metrics"):
            cursor = self.metric_rows.find({"job_id": job_id}).sort(
                [("round", ASCENDING), ("participant", ASCENDING)]
            )
            return [d async for d in cursor]

    async def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        async with _translated("checkpoints"):
            cursor = self.checkpoint_rows.find({"job_id": job_id}).sort(
                [("round", ASCENDING), ("participant", ASCENDING)]
            )
            return [d async for d in cursor]

    async def record_rejections(self, rejections: Sequence[Rejection]) -> None:
        if not rejections:
            return
        self.round_trips += 1
        async with _translated("record rejections"):
            await self.rejection_rows.insert_many([r.model_dump() for r in rejections])

    async def rejections(self, limit: int = 100, job_id: str | None = None,
                         since: datetime | None = None) -> list[Rejection]:
        query: dict[str, Any] = {} if job_id is None else {"job_id": job_id}
        if since is not None:
            query["at"] = {"$gte": since}
        async with _translated("rejections"):
            cursor = self.rejection_rows.find(query, {"_id": 0}).sort([("at", DESCENDING)])
            return [Rejection.model_validate(d) async for d in cursor.limit(limit)]

    async def record_refused_events(self, rows: Sequence[RefusedEvent]) -> None:
        if not rows:
            return
        self.round_trips += 2
        async with _translated("record refused events"):
            await self.refused_rows.insert_many([r.model_dump() for r in rows])
            total = await self.refused_rows.estimated_document_count()
            excess = total - self.refused_cap
            if excess > 0:  # keep the newest: drop the oldest rows over the cap
                self.round_trips += 2
                cursor = self.refused_rows.find({}, {"_id": 1}).sort(
                    [("at", ASCENDING), ("_id", ASCENDING)]).limit(excess)
                old = [d["_id"] async for d in cursor]
                await self.refused_rows.delete_many({"_id": {"$in": old}})

    async def refused_events(self, limit: int = 100, job_id: str | None = None
                             ) -> list[RefusedEvent]:
        query = {} if job_id is None else {"job_id": job_id}
        async with _translated("refused events"):
            cursor = self.refused_rows.find(query, {"_id": 0}).sort(
                [("at", DESCENDING), ("_id", DESCENDING)])
            return [RefusedEvent.model_validate(d) async for d in cursor.limit(limit)]


def job_filter(query: JobQuery) -> dict[str, Any]:
    """The MongoDB filter of a :class:`JobQuery`."""
    clauses: list[dict[str, Any]] = []
    if query.status is not None:
        clauses.append({"status": query.status.value})
    if query.workload is not None:
        clauses.append({"spec.workload": query.workload})
    clauses.extend({f"spec.labels.{k}": v} for k, v in query.labels)
    if query.created_after is not None:
        clauses.append({"created_at": {"$gte": query.created_after}})
    if query.created_before is not None:
        clauses.append({"created_at": {"$lt": query.created_before}})
    if query.older_than is not None:
        at, job_id = query.older_than
        clauses.append({"$or": [{"created_at": {"$lt": at}},
                                {"created_at": at, "_id": {"$lt": job_id}}]})
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _checkpoint_upsert(doc: dict[str, Any]) -> UpdateOne:
    """Upsert a manifest row; ``final`` is sticky, so the order of two saves of one key
    (a last round that is also the final model) cannot clear it."""
    fields = {k: v for k, v in doc.items() if k not in ("_id", "final")}
    update: dict[str, Any] = {"$set": fields}
    if doc["final"]:
        update["$set"]["final"] = True
    else:
        update["$setOnInsert"] = {"final": False}
    return UpdateOne({"_id": doc["_id"]}, update, upsert=True)


def connect_mongo(url: str, db_name: str, *, timeout_ms: int = 5000,
                  tls: TLSFiles = NO_TLS_FILES) -> MongoJobStore:
    """A store on a real (or stand-in) server through ``pymongo.AsyncMongoClient``; TLS as the
    URL says (``tls=true&tlsCAFile=…``) or as ``tls`` says (``Settings.mongo_tls``)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        url,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        tz_aware=True,
        uuidRepresentation="standard",
        **mongo_tls_options(tls),
    )
    return MongoJobStore(client[db_name], client=client)


__all__ = ["MongoJobStore", "connect_mongo"]
