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


def _after(start: datetime | None, delta: timedelta | None) -> datetime | None:
    """``start + delta``, or None when either is None (a timeout disabled, or not begun)."""
    if start is None or delta is None:
        return None
    return start + delta


def deadlines(job: Job) -> list[Deadline]:
    """Every deadline currently armed for the job, earliest first."""
    t = job.spec.timeouts.deltas
    found: list[Deadline] = []

    def arm(at: datetime | None, kind: DeadlineKind, participant: str | None = None) -> None:
        if at is not None:
            found.append(Deadline(at, kind, participant))

    if job.status is JobStatus.NOT_STARTED:
        arm(_after(job.created_at, t.start), "start")
    elif job.status is JobStatus.IN_PROGRESS:
        if job.phase is Phase.CANCELLING:
            arm(_after(job.cancel_requested_at, t.cancel_grace), "cancel_grace")
        else:
            arm(_after(job.started_at, t.job), "job")
            for p in job.participants.values():
                if p.active:
                    arm(_after(p.last_seen or p.assigned_at, t.heartbeat), "heartbeat", p.id)
            if job.phase is Phase.RUNNING:
                arm(_after(job.round_started_at, t.round), "round")
            if job.phase is Phase.FINALIZING:
                arm(_after(job.server.finished_at, t.heartbeat), "finalize")
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
    t = job.spec.timeouts.deltas
    status = job.status
    if status is not _IN_PROGRESS:
        return _after(job.created_at, t.start) if status is _NOT_STARTED else None
    phase = job.phase
    if phase is _CANCELLING:
        return _after(job.cancel_requested_at, t.cancel_grace)
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
    ``decide``'s liveness shortcut, which finds that in a pass over them of its own).
    The timeouts as timedeltas (``Timeouts.deltas``, made once per spec): hot path."""
    d = job.spec.timeouts.deltas
    best = None if oldest_seen is None else oldest_seen + d.heartbeat
    if d.job is not None and job.started_at is not None:
        at = job.started_at + d.job
        if best is None or at < best:
            best = at
    phase = job.phase
    start: datetime | None
    delta: timedelta | None
    if phase is _RUNNING:
        start, delta = job.round_started_at, d.round
    elif phase is _FINALIZING:
        start, delta = participants["server"].finished_at, d.heartbeat
    else:
        return best
    if start is not None and delta is not None:
        at = start + delta
        if best is None or at < best:
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
