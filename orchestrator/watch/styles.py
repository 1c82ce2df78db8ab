"""The colours of job statuses and participant states, shared by every terminal view."""

from __future__ import annotations

from orchestrator.core import JobStatus, ParticipantState

_STATE_STYLES = {
    JobStatus.NOT_STARTED.value: "yellow",
    JobStatus.IN_PROGRESS.value: "cyan",
    JobStatus.FINISHED_SUCCESSFULLY.value: "bold green",
    JobStatus.FINISHED_WITH_ERROR.value: "bold red",
    JobStatus.FINISHED_CANCELLED.value: "magenta",
    ParticipantState.PENDING.value: "dim",
    ParticipantState.ASSIGNED.value: "yellow",
    ParticipantState.STARTED.value: "cyan",
    ParticipantState.FINISHED.value: "green",
    ParticipantState.FAILED.value: "red",
    ParticipantState.STOPPED.value: "magenta",
    ParticipantState.SKIPPED.value: "dim",
}


def state_style(state: str) -> str:
    """A rich style per job status or participant state."""
    return _STATE_STYLES.get(state, "")
