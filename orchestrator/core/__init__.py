"""The pure core: statuses, specs, the Job aggregate, events, commands and the state machine.

Importing this package loads no I/O library (redis, pymongo, motor, aioboto3, anyio).
"""

from orchestrator.core._types import is_name, validation_problems
from orchestrator.core.commands import (
    COMMAND_ADAPTER,
    Command,
    MembershipChanged,
    StartParticipant,
    StopParticipant,
    command_id,
    start_command,
)
from orchestrator.core.deadlines import Deadline, deadlines, due, next_deadline_at
from orchestrator.core.diagram import mermaid
from orchestrator.core.events import (
    EVENT_ADAPTER,
    EVENT_TYPES,
    CancelRequested,
    CheckpointSaved,
    DeadlineExpired,
    Event,
    Heartbeat,
    JobDispatched,
    JobUnschedulable,
    ParticipantEvent,
    ParticipantFailed,
    ParticipantFinished,
    ParticipantStarted,
    ParticipantStopped,
    RoundMetrics,
    RoundStarted,
)
from orchestrator.core.job import (
    CheckpointRef,
    HistoryEntry,
    Job,
    JobError,
    Participant,
    document_value,
)
from orchestrator.core.machine import JOINT, RULES, JointRule, Rule, decide, new_job
from orchestrator.core.records import CheckpointRecord, Decision, MetricRecord, Outcome
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

__all__ = [
    "ACTIVE",
    "COMMAND_ADAPTER",
    "EVENT_ADAPTER",
    "EVENT_TYPES",
    "JOINT",
    "RULES",
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
    "JobUnschedulable",
    "JointRule",
    "MembershipChanged",
    "MetricRecord",
    "Outcome",
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
    "command_id",
    "deadlines",
    "decide",
    "document_value",
    "due",
    "is_name",
    "mermaid",
    "new_job",
    "next_deadline_at",
    "start_command",
    "validation_problems",
]
