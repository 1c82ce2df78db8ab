"""Deadlines derived from a job's own state, in one place (pure: ``now`` is passed in).

Start, heartbeat, round, job, cancel grace, finalize. The job keeps the earliest as
``deadline_at``, indexed with ``status``, so the reaper finds due jobs with one indexed query
and never scans all jobs; ``decide`` re-checks that a deadline is still due.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from orchestrator.core.events import DeadlineKind
from orchestrator.core.job import Participant
from orchestrator.core.spec import JobSpec
from orchestrator.core.status import JobStatus, ParticipantState, Phase

ACTIVE_STATES = frozenset({ParticipantState.ASSIGNED, ParticipantState.STARTED})


class Timed(Protocol):
    """What deadlines are derived from: a ``Job``, or a decision's working copy of one."""

    @property
    def spec(self) -> JobSpec: ...
    @property
    def status(self) -> JobStatus: ...
    @property
    def phase(self) -> Phase: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def cancel_requested_at(self) -> datetime | None: ...
    @property
    def round_started_at(self) -> datetime | None: ...
    @property
    def participants(self) -> Mapping[str, Participant]: ...


@dataclass(frozen=True, slots=True)
class Deadline:
    at: datetime
    kind: DeadlineKind
    participant: str | None = None


def deadlines(job: Timed) -> list[Deadline]:
    """Every deadline armed for the job now, earliest first."""
    t = job.spec.timeouts.deltas
    found: list[Deadline] = []

    def arm(start: datetime | None, delta: Any, kind: DeadlineKind, pid: str | None = None
            ) -> None:
        if start is not None and delta is not None:
            found.append(Deadline(start + delta, kind, pid))

    if job.status is JobStatus.NOT_STARTED:
        found.append(Deadline(start_deadline_at(job.spec, job.created_at), "start"))
    elif job.status is JobStatus.IN_PROGRESS and job.phase is Phase.CANCELLING:
        arm(job.cancel_requested_at, t.cancel_grace, "cancel_grace")
    elif job.status is JobStatus.IN_PROGRESS:
        arm(job.started_at, t.job, "job")
        for p in job.participants.values():
            if p.state in ACTIVE_STATES:
                arm(p.last_seen or p.assigned_at, t.heartbeat, "heartbeat", p.id)
        if job.phase is Phase.RUNNING:
            arm(job.round_started_at, t.round, "round")
        elif job.phase is Phase.FINALIZING:
            arm(job.participants["server"].finished_at, t.heartbeat, "finalize")
    found.sort(key=lambda d: (d.at, d.kind, d.participant or ""))
    return found


def start_deadline_at(spec: JobSpec, created_at: datetime) -> datetime:
    """The one deadline of a job not started yet: its workers must take it by then."""
    return created_at + spec.timeouts.deltas.start


def next_deadline_at(job: Timed) -> datetime | None:
    """The earliest armed deadline (what the job stores as ``deadline_at``)."""
    armed = deadlines(job)
    return armed[0].at if armed else None


def due(job: Timed, now: datetime) -> list[Deadline]:
    """The deadlines that have passed at ``now``."""
    return [d for d in deadlines(job) if d.at <= now]
