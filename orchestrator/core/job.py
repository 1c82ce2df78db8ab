"""The Job aggregate: everything the orchestrator knows about one job.

Stored in Mongo as one document (``_id`` = job id); every change is a compare-and-set on
``version``. Instances are immutable: ``decide`` returns a new one.

``Job`` and ``Participant`` are frozen, slotted dataclasses rather than pydantic models: the
daemon reads their fields many times per event, and a slot read costs a tenth of a model
field read (``orchestrator.core._types``). Pydantic still validates them where they enter
(``Job.from_document``, through a ``TypeAdapter``) and dumps them; code builds them from
validated data (``Job.new`` from a validated spec, ``evolve`` from existing jobs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

from orchestrator.core._types import Metrics, Name, UtcDatetime, evolve
from orchestrator.core.deadlines import next_deadline_at
from orchestrator.core.spec import JobSpec
from orchestrator.core.status import ErrorCode, JobStatus, ParticipantState, Phase, Role

_MODEL = ConfigDict(frozen=True, extra="forbid")


_ACTIVE_STATES = frozenset({ParticipantState.ASSIGNED, ParticipantState.STARTED})


class JobError(BaseModel):
    model_config = _MODEL

    code: ErrorCode
    message: str
    participant: str | None = None


class HistoryEntry(BaseModel):
    """One status change: from, to, when, which event caused it, and why."""

    model_config = _MODEL

    from_status: JobStatus | None
    to_status: JobStatus
    at: UtcDatetime
    event_id: str
    reason: str


class CheckpointRef(BaseModel):
    model_config = _MODEL

    key: str
    round: int
    participant: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Participant:
    """One participant's state inside a job."""

    __pydantic_config__ = _MODEL

    id: Name
    role: Role
    worker: Name
    run_id: str | None = None
    state: ParticipantState = ParticipantState.PENDING
    assigned_at: UtcDatetime | None = None
    last_seen: UtcDatetime | None = None
    last_seq: int = -1
    round: int = 0
    metrics_round: int | None = None
    metrics: Metrics = field(default_factory=dict)
    final_checkpoint: str | None = None  # announced by the server in ``participant.finished``
    finished_at: UtcDatetime | None = None
    error: JobError | None = None

    @property
    def active(self) -> bool:
        """Dispatched and not yet terminal: expected to heartbeat."""
        return self.state in _ACTIVE_STATES


@dataclass(frozen=True, slots=True, kw_only=True)
class Job:
    __pydantic_config__ = _MODEL

    id: Name
    spec: JobSpec
    status: JobStatus = JobStatus.NOT_STARTED
    phase: Phase = Phase.QUEUED
    participants: dict[str, Participant]
    round: int = 0
    round_started_at: UtcDatetime | None = None
    error: JobError | None = None
    created_at: UtcDatetime
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    updated_at: UtcDatetime
    cancel_requested_at: UtcDatetime | None = None
    deadline_at: UtcDatetime | None = None
    latest_checkpoint: CheckpointRef | None = None
    final_checkpoint: CheckpointRef | None = None
    idempotency_key: str | None = None
    version: int = 0
    history: list[HistoryEntry] = field(default_factory=list)

    @classmethod
    def new(cls, job_id: str, spec: JobSpec, now: datetime, *, event_id: str = "submit") -> Job:
        """A fresh NOT_STARTED job with one participant per spec entry."""
        participants = {
            pid: Participant(
                id=pid,
                role=Role.SERVER if pid == "server" else Role.CLIENT,
                worker=spec.participant_spec(pid).worker,
            )
            for pid in spec.participant_ids()
        }
        job = cls(
            id=job_id,
            spec=spec,
            participants=participants,
            created_at=now,
            updated_at=now,
            idempotency_key=spec.idempotency_key,
            history=[
                HistoryEntry(
                    from_status=None,
                    to_status=JobStatus.NOT_STARTED,
                    at=now,
                    event_id=event_id,
                    reason="submitted",
                )
            ],
        )
        return evolve(job, {"deadline_at": next_deadline_at(job)})

    @property
    def server(self) -> Participant:
        return self.participants["server"]

    @property
    def clients(self) -> list[Participant]:
        return [p for p in self.participants.values() if p.role is Role.CLIENT]

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    def to_document(self) -> dict[str, Any]:
        """The Mongo document: ``_id`` is the job id; datetimes stay datetimes."""
        doc: dict[str, Any] = JOB_ADAPTER.dump_python(self, mode="python", exclude={"id"})
        doc["_id"] = self.id
        doc["spec"] = self.spec.model_dump(mode="json")
        return doc

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Job:
        data = dict(doc)
        data["id"] = data.pop("_id")
        return JOB_ADAPTER.validate_python(data)


#: Validates and dumps jobs (``Job`` is a dataclass: pydantic works on it through this).
JOB_ADAPTER: TypeAdapter[Job] = TypeAdapter(Job)
