"""Events: facts reported by workers, submitters and the daemon itself.

Every event carries a producer-generated ``event_id`` (dedup key, stable across resends) and
the ``job_id`` it belongs to. Participant events also carry the participant id, the worker
that runs it, a per-participant ``seq`` that only grows, and a ``mac`` made with the
participant run's secret (``orchestrator.core.auth``): the daemon refuses a participant event
without a valid one before ``decide`` sees it, and ``decide`` itself ignores the field.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, TypeAdapter

from orchestrator.core._types import FROZEN, Metrics, Name, UtcDatetime
from orchestrator.core.status import ErrorCode

#: Largest event entry accepted from the bus (checked before its JSON is parsed).
MAX_EVENT_BYTES = 64 * 1024

EventId = Annotated[str, Field(min_length=1, max_length=128)]
Mac = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Message = Annotated[str, Field(max_length=4096)]


class _Event(BaseModel):
    model_config = FROZEN

    event_id: EventId
    job_id: Name
    at: UtcDatetime | None = None  # producer's clock, informational only


class _ParticipantEvent(_Event):
    participant: Name
    worker: Name
    seq: Annotated[int, Field(ge=0)] = 0
    #: HMAC-SHA256 of the event's canonical bytes with the run secret (``core.auth``).
    mac: Mac | None = None


class JobDispatched(_Event):
    """The daemon admitted the job: these participants get start commands (uuid per run)."""

    type: Literal["job.dispatched"] = "job.dispatched"
    assignments: dict[Name, Name]  # participant id -> run uuid


class ParticipantStarted(_ParticipantEvent):
    type: Literal["participant.started"] = "participant.started"


class Heartbeat(_ParticipantEvent):
    type: Literal["participant.heartbeat"] = "participant.heartbeat"
    round: Annotated[int, Field(ge=0)] | None = None


class RoundStarted(_ParticipantEvent):
    type: Literal["round.started"] = "round.started"
    round: Annotated[int, Field(ge=1)]


class RoundMetrics(_ParticipantEvent):
    type: Literal["round.metrics"] = "round.metrics"
    round: Annotated[int, Field(ge=0)]
    metrics: Annotated[Metrics, Field(max_length=64)]


class CheckpointSaved(_ParticipantEvent):
    """Published only after the object is durable in the object store."""

    type: Literal["checkpoint.saved"] = "checkpoint.saved"
    round: Annotated[int, Field(ge=0)]
    key: Annotated[str, Field(min_length=1, max_length=1024)]
    size: Annotated[int, Field(ge=0)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    parent: Annotated[str, Field(max_length=1024)] | None = None
    final: bool = False


class ParticipantFinished(_ParticipantEvent):
    """The participant's workload returned. The server names its final checkpoint, if any."""

    type: Literal["participant.finished"] = "participant.finished"
    final_checkpoint: Annotated[str, Field(max_length=1024)] | None = None


class ParticipantFailed(_ParticipantEvent):
    type: Literal["participant.failed"] = "participant.failed"
    code: ErrorCode = ErrorCode.WORKLOAD_FAILED
    message: Message = ""


class ParticipantStopped(_ParticipantEvent):
    """The participant stopped after a stop command (or its worker shut down)."""

    type: Literal["participant.stopped"] = "participant.stopped"
    reason: Message = ""


class CancelRequested(_Event):
    type: Literal["cancel.requested"] = "cancel.requested"
    reason: Message = "cancelled by user"
    requested_by: Annotated[str, Field(max_length=256)] | None = None


DeadlineKind = Literal["start", "heartbeat", "round", "job", "cancel_grace", "finalize"]


class DeadlineExpired(_Event):
    """Produced by the daemon's reaper from the job's own deadlines (see ``deadlines``)."""

    type: Literal["deadline.expired"] = "deadline.expired"
    kind: DeadlineKind
    participant: Name | None = None
    #: For a start deadline: why the job could not be dispatched, as admission saw it when
    #: the reaper expired it (e.g. "worker 'cli-1' is not registered"); it becomes the error.
    message: Message | None = None


class JobUnschedulable(_Event):
    """Produced by the daemon's admission: the job can never be dispatched as specified (a
    participant names a worker that is alive but registered for the other role)."""

    type: Literal["job.unschedulable"] = "job.unschedulable"
    participant: Name
    worker: Name
    message: Message


ParticipantEvent = (
    ParticipantStarted
    | Heartbeat
    | RoundStarted
    | RoundMetrics
    | CheckpointSaved
    | ParticipantFinished
    | ParticipantFailed
    | ParticipantStopped
)
Event = Annotated[
    JobDispatched | ParticipantEvent | CancelRequested | DeadlineExpired | JobUnschedulable,
    Field(discriminator="type"),
]

#: Pre-built validator for the wire: ``EVENT_ADAPTER.validate_json(raw)``.
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

EVENT_TYPES: tuple[str, ...] = (
    "job.dispatched",
    "participant.started",
    "participant.heartbeat",
    "round.started",
    "round.metrics",
    "checkpoint.saved",
    "participant.finished",
    "participant.failed",
    "participant.stopped",
    "cancel.requested",
    "deadline.expired",
    "job.unschedulable",
)

PARTICIPANT_EVENT_TYPES: tuple[type[_ParticipantEvent], ...] = (
    ParticipantStarted,
    Heartbeat,
    RoundStarted,
    RoundMetrics,
    CheckpointSaved,
    ParticipantFinished,
    ParticipantFailed,
    ParticipantStopped,
)


#: The base class of every participant event (for ``isinstance`` and type bounds).
ParticipantEventBase = _ParticipantEvent


def is_participant_event(event: Event) -> bool:
    return isinstance(event, _ParticipantEvent)
