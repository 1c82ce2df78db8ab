"""The Job aggregate: everything the orchestrator knows about one job.

Stored in Mongo as one document (``_id`` = job id); every change is a compare-and-set on
``version`` that writes only the changed fields. Instances are immutable: ``decide``
returns a new one (``orchestrator.core.machine``; ``new_job`` makes a fresh one).

``Job`` and ``Participant`` are frozen, slotted dataclasses: code builds them from validated
data (a validated spec, or ``dataclasses.replace`` of an existing job), and pydantic
validates and dumps them where they cross the boundary (documents, through ``JOB_ADAPTER``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

from orchestrator.core._types import Metrics, Name, UtcDatetime
from orchestrator.core.spec import JobSpec
from orchestrator.core.status import ErrorCode, JobStatus, ParticipantState, Phase, Role

_MODEL = ConfigDict(frozen=True, extra="forbid")


_ACTIVE_STATES = frozenset({ParticipantState.ASSIGNED, ParticipantState.STARTED})


class JobError(BaseModel):
    model_config = _MODEL

    code: ErrorCode
    message: str
    participant: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One status change: from, to, when, which event caused it, why, and the rule of the
    state machine that made it (``RULES``' summary, the deadline, or the ``JOINT`` rule).
    A dataclass like ``Job``: built by code from validated values (one per status change),
    validated and dumped by pydantic with the job (``HISTORY_ADAPTER`` on its own)."""

    __pydantic_config__ = _MODEL

    from_status: JobStatus | None
    to_status: JobStatus
    at: UtcDatetime
    event_id: str
    reason: str
    rule: str | None = None  # (None in documents written before it was recorded)


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
        doc: dict[str, Any] = JOB_ADAPTER.dump_python(self, mode="python",
                                                      exclude={"id", "spec"})
        doc["_id"] = self.id
        doc["spec"] = self.spec.model_dump(mode="json")  # (JSON values: the spec as sent)
        return doc

    @classmethod
    def from_document(cls, doc: dict[str, Any]) -> Job:
        data = dict(doc)
        data["id"] = data.pop("_id")
        return JOB_ADAPTER.validate_python(data)


#: Validates and dumps jobs (``Job`` is a dataclass: pydantic works on it through this).
JOB_ADAPTER: TypeAdapter[Job] = TypeAdapter(Job)
#: Dumps history entries on their own (a partial write's ``$push``).
HISTORY_ADAPTER: TypeAdapter[HistoryEntry] = TypeAdapter(HistoryEntry)


def document_value(job: Job, path: str) -> Any:
    """The document value at a dotted ``path`` of ``job`` (``status``,
    ``participants.client-0.last_seen``…) as ``to_document`` writes it, for a partial
    ``$set`` of the fields a decision changed. (Paths name scalar fields, metrics dicts and
    the small models: errors and checkpoint references; never the spec or the history.)"""
    head, _, rest = path.partition(".")
    if head == "participants":
        pid, _, name = rest.partition(".")
        value = getattr(job.participants[pid], name)
    else:
        value = getattr(job, head)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="python")
    if isinstance(value, dict):
        return dict(value)
    return value
