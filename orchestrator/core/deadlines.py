"""Deadlines derived from a job's own state (pure: ``now`` is always passed in).

The store keeps ``deadline_at`` = the earliest of these, indexed with ``status``, so the
reaper finds due jobs with one indexed query and never scans all jobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from orchestrator.core.events import DeadlineKind
from orchestrator.core.status import JobStatus, ParticipantState, Phase

if TYPE_CHECKING:
    from collections.abc import Mapping

    from orchestrator.core.job import Job, Participant


_ACTIVE_STATES = frozenset({ParticipantState.ASSIGNED, ParticipantState.STARTED})


@dataclass(frozen=True, slots=True)
class Deadline:
    at: datetime
    kind: DeadlineKind
    participant: str | None = None


_DELTAS: dict[float, timedelta] = {}


def after(start: datetime | None, seconds: float | None) -> datetime | None:
    """``start + seconds``, or None when either is None (timedeltas cached: hot path)."""
    if start is None or seconds is None:
        return None
    delta = _DELTAS.get(seconds)
    if delta is None:
        if len(_DELTAS) >= 1024:  # timeouts come from specs: few distinct values, but bounded
            _DELTAS.clear()
        delta = _DELTAS[seconds] = timedelta(seconds=seconds)
    return start + delta


def deadlines(job: Job) -> list[Deadline]:
    """Every deadline currently armed for the job, earliest first."""
    t = job.spec.timeouts
    found: list[Deadline] = []

    def arm(at: datetime | None, kind: DeadlineKind, participant: str | None = None) -> None:
        if at is not None:
            found.append(Deadline(at, kind, participant))

    if job.status is JobStatus.NOT_STARTED:
        arm(after(job.created_at, t.start_s), "start")
    elif job.status is JobStatus.IN_PROGRESS:
        if job.phase is Phase.CANCELLING:
            arm(after(job.cancel_requested_at, t.cancel_grace_s), "cancel_grace")
        else:
            arm(after(job.started_at, t.job_s), "job")
            for p in job.participants.values():
                if p.active:
                    arm(after(p.last_seen or p.assigned_at, t.heartbeat_s), "heartbeat", p.id)
            if job.phase is Phase.RUNNING:
                arm(after(job.round_started_at, t.round_s), "round")
            if job.phase is Phase.FINALIZING:
                arm(after(job.server.finished_at, t.heartbeat_s), "finalize")
    found.sort(key=lambda d: (d.at, d.kind, d.participant or ""))
    return found


_NOT_STARTED = JobStatus.NOT_STARTED
_IN_PROGRESS = JobStatus.IN_PROGRESS
_CANCELLING = Phase.CANCELLING
_RUNNING = Phase.RUNNING
_FINALIZING = Phase.FINALIZING


def next_deadline_at(
    job: Job, participants: Mapping[str, Participant] | None = None
) -> datetime | None:
    """The earliest of ``deadlines(job)``: the same rules, computed without building them
    (this runs once per decision, on the hot path). ``participants`` stands in for the job's
    own when a decision has changed them but not yet built the new job."""
    parts = job.participants if participants is None else participants
    t = job.spec.timeouts
    status = job.status
    if status is not _IN_PROGRESS:
        return after(job.created_at, t.start_s) if status is _NOT_STARTED else None
    phase = job.phase
    if phase is _CANCELLING:
        return after(job.cancel_requested_at, t.cancel_grace_s)
    oldest: datetime | None = None
    for p in parts.values():
        if p.state in _ACTIVE_STATES:
            seen = p.last_seen or p.assigned_at
            if seen is not None and (oldest is None or seen < oldest):
                oldest = seen
    return running_deadline_at(job, oldest, parts)


def running_deadline_at(
    job: Job, oldest_seen: datetime | None, participants: Mapping[str, Participant]
) -> datetime | None:
    """``next_deadline_at`` of an IN_PROGRESS job that is not cancelling, given the oldest
    sign of life (``last_seen``, else ``assigned_at``) of its active participants (for
    ``decide``'s liveness shortcut, which finds that in a pass over them of its own)."""
    t = job.spec.timeouts
    best = after(oldest_seen, t.heartbeat_s)
    at = after(job.started_at, t.job_s)
    if at is not None and (best is None or at < best):
        best = at
    phase = job.phase
    if phase is _RUNNING:
        at = after(job.round_started_at, t.round_s)
    elif phase is _FINALIZING:
        at = after(participants["server"].finished_at, t.heartbeat_s)
    else:
        return best
    if at is not None and (best is None or at < best):
        best = at
    return best


def due(job: Job, now: datetime) -> list[Deadline]:
    """The deadlines that have passed at ``now``."""
    return [d for d in deadlines(job) if d.at <= now]


def is_due(job: Job, kind: DeadlineKind, participant: str | None, now: datetime) -> bool:
    return any(d.kind == kind and d.participant == participant for d in due(job, now))


__all__ = [
    "Deadline",
    "ParticipantState",
    "deadlines",
    "due",
    "is_due",
    "next_deadline_at",
    "running_deadline_at",
]
