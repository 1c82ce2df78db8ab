"""From the watcher's frames to what the client returns: one :class:`Change` per committed
version of a job (the daemon's note with it), oldest first, never the same version twice; and
the finished job a wait ends with (or the daemon's refusal of the submission)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from orchestrator.client.records import Change
from orchestrator.core import Job
from orchestrator.errors import JobRejectedError
from orchestrator.store.port import Rejection
from orchestrator.watch.follow import Frame

Refused = Callable[[Job | None], Awaitable[tuple[bool, Rejection | None]]]
"""Given the job holding the id (None: none yet): whether it is another submission's job, and
the daemon's rejection of ours once recorded (``Client.submission_refused``)."""


async def changes(frames: AsyncIterator[Frame], job_id: str | None) -> AsyncIterator[Change]:
    """For ``job_id``: its changes until it is FINISHED_* (or a rejection, then the end);
    without one: the changes of the jobs the frames show, forever."""
    versions: dict[str, int] = {}
    async for frame in frames:
        if job_id is not None:
            if frame.detail is None:
                if frame.rejection is not None:
                    yield Change(job_id, None, rejection=frame.rejection)
                    return
                continue
            jobs = [frame.detail.job]
        else:
            jobs = list(reversed(frame.jobs))  # oldest first
        for job in jobs:
            if versions.get(job.id, -1) >= job.version:
                continue
            versions[job.id] = job.version
            notes = [n for n in frame.updates if n.get("job_id") == job.id]
            yield Change(job.id, job, notes[-1].get("reason") if notes else None)
            if job_id is not None and job.is_terminal:
                return


async def finished(frames: AsyncIterator[Frame], job_id: str, *,
                   refused: Refused | None = None) -> Job:
    """The job once it is FINISHED_*. ``JobRejectedError`` when the daemon refused the
    submission: any recorded rejection of the id without ``refused``, else the one
    ``refused`` finds (a job of that id with another spec is not waited for)."""
    async for frame in frames:
        job = None if frame.detail is None else frame.detail.job
        if job is None and frame.rejection is not None and refused is None:
            kind, _, reason = frame.rejection.partition(": ")
            raise JobRejectedError(job_id, kind, reason)
        if job is None and frame.rejection is None:
            continue
        other = False
        if refused is not None:
            other, rejection = await refused(job)
            if rejection is not None:
                raise JobRejectedError(job_id, rejection.kind, rejection.reason)
        if job is not None and not other and job.is_terminal:
            return job
    raise AssertionError("the watcher's frames never end")  # pragma: no cover
