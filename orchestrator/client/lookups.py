"""The client's reads of jobs from the store: one job (naming the rejection of a submission
that never became one), the daemon's newest rejection of a job id, a job's explanation, its
manifest rows, and the query and page of a job list. :class:`~orchestrator.client.client.Client`
connects the store and delegates to these.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from orchestrator.client.records import (
    JobPage,
    decode_cursor,
    encode_cursor,
    status_filter,
)
from orchestrator.client.why import Explanation, explain, explain_rejection
from orchestrator.core import Job, JobStatus
from orchestrator.errors import JobNotFoundError, PermanentError
from orchestrator.store.port import JobQuery, JobStore, Rejection
from orchestrator.watch.follow import utcnow
from orchestrator.watch.model import checkpoint_rows


async def find_job(store: JobStore, job_id: str) -> Job:
    """The job as stored; ``JobNotFoundError`` (with the rejection, when the daemon refused a
    submission of that id)."""
    job = await store.find_by_id(job_id)
    if job is not None:
        return job
    rejection = await newest_rejection(store, job_id)
    if rejection is not None:
        raise JobNotFoundError(f"no job with id {job_id!r}: its submission was rejected "
                               f"({rejection.kind}: {rejection.reason})")
    raise JobNotFoundError(f"no job with id {job_id!r}")


async def newest_rejection(store: JobStore, job_id: str, entry_id: str | None = None
                           ) -> Rejection | None:
    """The daemon's newest rejection naming ``job_id`` (of the submission ``entry_id`` when
    given)."""
    rows = await store.rejections(limit=1 if entry_id is None else 50, job_id=job_id)
    if entry_id is not None:
        rows = [r for r in rows if r.entry_id == entry_id]
    return rows[0] if rows else None


async def explanation(store: JobStore, job_id: str) -> Explanation:
    """A short causal account of how the job ended (or of its rejection)."""
    job = await store.find_by_id(job_id)
    if job is None:
        rejection = await newest_rejection(store, job_id)
        if rejection is None:
            raise JobNotFoundError(f"no job with id {job_id!r}")
        return explain_rejection(rejection)
    return explain(job, utcnow(), await store.refused_events(limit=20, job_id=job_id))


async def manifest_rows(store: JobStore, job_id: str, *, final_only: bool,
                        round_: int | None) -> list[dict[str, Any]]:
    """The job's manifest rows for display, oldest round first (only the final ones, or one
    round's, when asked); ``JobNotFoundError`` as ``find_job``."""
    await find_job(store, job_id)
    rows = checkpoint_rows(await store.checkpoints(job_id))
    if final_only:
        rows = [r for r in rows if r["final"]]
    if round_ is not None:
        rows = [r for r in rows if r["round"] == round_]
    return rows


def job_query(*, status: JobStatus | str | None, workload: str | None,
              labels: Mapping[str, str] | None, created_after: datetime | None,
              created_before: datetime | None, limit: int, cursor: str | None) -> JobQuery:
    """The store query of a job list's filters, checked (``PermanentError``: a limit below 1,
    a label key that is not a plain document field, an unknown status)."""
    if limit < 1:
        raise PermanentError("limit must be at least 1")
    for key in labels or {}:  # (a label key is a document path in the store's query)
        if not key or "." in key or key.startswith("$"):
            raise PermanentError(f"label key {key!r}: not empty, no '.', no leading '$'")
    return JobQuery(
        status=status_filter(status),
        workload=workload, labels=tuple(sorted((labels or {}).items())),
        created_after=created_after, created_before=created_before,
        older_than=None if cursor is None else decode_cursor(cursor))


def job_page(jobs: list[Job], limit: int) -> JobPage:
    """The page of the first ``limit`` of ``jobs`` (read with ``limit + 1``: one more means a
    next page, whose cursor follows the page's last job)."""
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return JobPage(jobs, encode_cursor(jobs[-1]) if more and jobs else None)


__all__ = [
    "explanation",
    "find_job",
    "job_page",
    "job_query",
    "manifest_rows",
    "newest_rejection",
]
