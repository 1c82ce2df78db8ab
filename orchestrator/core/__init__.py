"""The pure core: statuses, specs, the Job aggregate, events, commands and ``decide``.

Importing this package loads no I/O library (redis, pymongo, motor, aioboto3, anyio).
"""

from orchestrator.core._types import is_name, validation_problems
from orchestrator.core.commands import COMMAND_ADAPTER, Command, StartParticipant, StopParticipant
from orchestrator.core.deadlines import Deadline, deadlines, due, next_deadline_at
from orchestrator.core.decide import (
    CheckpointRecord,
    Decision,
    MetricRecord,
    TransitionError,
    decide,
)
from orchestrator.core.events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    CancelRequested,
    CheckpointSaved,
    DeadlineExpired,
    Event,
    Heartbeat,
    JobDispatched,
    ParticipantEvent,
    ParticipantFailed,
    ParticipantFinished,
    ParticipantStarted,
    ParticipantStopped,
    RoundMetrics,
    RoundStarted,
)
from orchestrator.core.job import CheckpointRef, HistoryEntry, Job, JobError, Participant
from orchestrator.core.spec import JobSpec, ParticipantSpec, Timeouts
from orchestrator.core.status import (
    ACTIVE,
    TERMINAL,
    ErrorCode,
    JobStatus,
    ParticipantState,
    Phase,
    Role,
)
from orchestrator.core.transitions import TABLE, Rule, mermaid

__all__ = [
    "ACTIVE",
    "COMMAND_ADAPTER",
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "TABLE",
    "TERMINAL",
    "CancelRequested",
    "CheckpointRecord",
    "CheckpointRef",
    "CheckpointSaved",
    "Command",
    "Deadline",
    "DeadlineExpired",
    "Decision",
    "ErrorCode",
    "Event",
    "Heartbeat",
    "HistoryEntry",
    "Job",
    "JobDispatched",
    "JobError",
    "JobSpec",
    "JobStatus",
    "MetricRecord",
    "Participant",
    "ParticipantEvent",
    "ParticipantFailed",
    "ParticipantFinished",
    "ParticipantSpec",
    "ParticipantStarted",
    "ParticipantState",
    "ParticipantStopped",
    "Phase",
    "Role",
    "RoundMetrics",
    "RoundStarted",
    "Rule",
    "StartParticipant",
    "StopParticipant",
    "Timeouts",
    "TransitionError",
    "deadlines",
    "decide",
    "due",
    "is_name",
    "mermaid",
    "next_deadline_at",
    "validation_problems",
]
