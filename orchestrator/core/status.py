"""Job and participant status enums with their named groups."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """The top-level status of a job. FINISHED_* statuses are absorbing."""

    NOT_STARTED = "NOT_STARTED"
    IN_PROGRESS = "IN_PROGRESS"
    FINISHED_SUCCESSFULLY = "FINISHED_SUCCESSFULLY"
    FINISHED_WITH_ERROR = "FINISHED_WITH_ERROR"
    FINISHED_CANCELLED = "FINISHED_CANCELLED"

    @classmethod
    def list(cls) -> list[str]:
        """All status values, in lifecycle order."""
        return [status.value for status in cls]

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


TERMINAL: frozenset[JobStatus] = frozenset(
    {
        JobStatus.FINISHED_SUCCESSFULLY,
        JobStatus.FINISHED_WITH_ERROR,
        JobStatus.FINISHED_CANCELLED,
    }
)
ACTIVE: frozenset[JobStatus] = frozenset({JobStatus.NOT_STARTED, JobStatus.IN_PROGRESS})


class Phase(StrEnum):
    """Progress detail inside a status (no extra top-level states)."""

    QUEUED = "queued"  # NOT_STARTED, waiting for admission
    STARTING = "starting"  # dispatched, waiting for participants to start
    RUNNING = "running"  # at least one round under way
    FINALIZING = "finalizing"  # server finished; its final checkpoint or clients pending
    CANCELLING = "cancelling"  # stop commands sent, waiting for participants to stop
    DONE = "done"  # terminal


class ParticipantState(StrEnum):
    """A participant's state only moves forward: rank(new) >= rank(old)."""

    PENDING = "pending"  # known from the spec, not dispatched yet
    ASSIGNED = "assigned"  # start command sent
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"  # stopped on request (cancel, or job ended without it)
    SKIPPED = "skipped"  # not dispatched: worker unavailable but min_clients held

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def is_terminal(self) -> bool:
        return _RANK[self] >= 3


_RANK = {
    ParticipantState.PENDING: 0,
    ParticipantState.ASSIGNED: 1,
    ParticipantState.STARTED: 2,
    ParticipantState.FINISHED: 3,
    ParticipantState.FAILED: 3,
    ParticipantState.STOPPED: 3,
    ParticipantState.SKIPPED: 3,
}


class Role(StrEnum):
    SERVER = "server"
    CLIENT = "client"


class ErrorCode(StrEnum):
    """Why a job finished with an error."""

    WORKLOAD_FAILED = "workload_failed"
    WORKER_LOST = "worker_lost"
    TIMED_OUT = "timed_out"
    CANNOT_SCHEDULE = "cannot_schedule"
    INVALID_SPEC = "invalid_spec"
    ORCHESTRATOR_RESTART = "orchestrator_restart"
    CHECKPOINT_FAILED = "checkpoint_failed"
    WORKER_SHUTDOWN = "worker_shutdown"
    STORAGE_UNAVAILABLE = "storage_unavailable"  # the object store stayed down past the budget
