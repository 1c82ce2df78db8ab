"""The plain values the client returns besides jobs: pages, changes, cancels, workers.

Jobs themselves are :class:`orchestrator.core.Job` (frozen); these records are frozen too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.core import Job, JobStatus, parse_utc
from orchestrator.errors import InvalidSpecError, PermanentError


@dataclass(frozen=True, slots=True)
class JobPage:
    """One page of :meth:`Client.list`: jobs newest first, and the cursor of the next page
    (None: this was the last one)."""

    jobs: list[Job]
    next_cursor: str | None = None


def encode_cursor(job: Job) -> str:
    """The cursor after ``job``: its creation time and id (``<iso time>|<id>``)."""
    return f"{job.created_at.isoformat()}|{job.id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """``(created_at, id)`` of a cursor; a malformed one is ``InvalidSpecError``."""
    at, sep, job_id = cursor.partition("|")
    when = parse_utc(at)
    if not sep or not job_id or when is None:
        raise InvalidSpecError(f"not a job list cursor: {cursor!r}")
    return when, job_id


def status_filter(status: JobStatus | str | None) -> JobStatus | None:
    """A status filter by member or name (any case); an unknown name is ``PermanentError``
    naming the valid ones."""
    if status is None or isinstance(status, JobStatus):
        return status
    try:
        return JobStatus(status.upper())
    except ValueError:
        raise PermanentError(f"unknown status {status!r}; one of "
                             f"{', '.join(JobStatus.list())}") from None


@dataclass(frozen=True, slots=True)
class Change:
    """A committed change of a job seen by :meth:`Client.watch`: the job as stored after it,
    and the daemon's note (``reason``) when one came with it. For a submission the daemon
    refused, ``job`` is None and ``rejection`` says why."""

    job_id: str
    job: Job | None
    reason: str | None = None
    rejection: str | None = None

    @property
    def status(self) -> JobStatus | None:
        return None if self.job is None else self.job.status

    @property
    def version(self) -> int:
        return -1 if self.job is None else self.job.version


@dataclass(frozen=True, slots=True)
class CancelResult:
    """What :meth:`Client.cancel` did: ``requested`` False when the job had already ended."""

    job_id: str
    status: JobStatus
    requested: bool
    entry_id: str | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """One live worker, from the registration its agent refreshes (``workers/registration.py``)."""

    name: str
    role: str
    capacity: int | None
    running: int | None
    participants: list[str]
    workloads: list[str]
    version: str | None
    host: str | None
    pid: int | None
    last_heartbeat: datetime | None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_registration(cls, name: str, info: Mapping[str, Any]) -> WorkerInfo:
        when = parse_utc(info.get("at")) if isinstance(info.get("at"), str) else None
        return cls(
            name=name,
            role=str(info.get("role", "?")),
            capacity=_int(info.get("capacity")),
            running=_int(info.get("running")),
            participants=[str(p) for p in info.get("participants") or []],
            workloads=sorted(str(w) for w in (info.get("workloads") or {})),
            version=None if info.get("version") is None else str(info["version"]),
            host=None if info.get("host") is None else str(info["host"]),
            pid=_int(info.get("pid")),
            last_heartbeat=when,
            raw=dict(info),
        )

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role, "capacity": self.capacity,
                "running": self.running, "participants": self.participants,
                "workloads": self.workloads, "version": self.version, "host": self.host,
                "pid": self.pid, "last_heartbeat": self.last_heartbeat}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
