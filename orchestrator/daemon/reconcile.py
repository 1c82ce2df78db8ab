"""Startup reconciliation: pick up every non-terminal job where the last daemon left it.

* NOT_STARTED jobs simply go back to admission (it scans them oldest first).
* IN_PROGRESS jobs: participants still ASSIGNED get their ``StartParticipant`` again (same
  command id and run id as the original, so a worker that already has it ignores it);
  CANCELLING jobs get ``StopParticipant`` for every still-active participant.
* Everything else (silent participants, rounds that overran) is the deadlines' business.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from orchestrator.core import (
    Command,
    Job,
    JobStatus,
    ParticipantState,
    Phase,
    StopParticipant,
)
from orchestrator.core.decide import command_id, start_command
from orchestrator.daemon.admission import dispatch_event_id
from orchestrator.logs import get_logger

if TYPE_CHECKING:
    from orchestrator.daemon.app import Daemon

log = get_logger("orchestrator.daemon.reconcile")
PAGE = 500


def _dispatch_id(job: Job) -> str:
    for entry in job.history:
        if entry.to_status is JobStatus.IN_PROGRESS:
            return entry.event_id
    return dispatch_event_id(job.id)


def recovery_commands(job: Job) -> list[Command]:
    """Commands that bring the workers in line with the stored job (pure)."""
    if job.status is not JobStatus.IN_PROGRESS:
        return []
    commands: list[Command] = []
    if job.phase is Phase.CANCELLING:
        for p in job.participants.values():
            if p.active:
                commands.append(StopParticipant(
                    command_id=command_id(f"reconcile.{job.id}.v{job.version}", "stop", p.id),
                    job_id=job.id, participant=p.id, worker=p.worker,
                    reason="cancelled (re-sent after a daemon restart)"))
        return commands
    dispatch_id = _dispatch_id(job)
    for p in job.participants.values():
        if p.state is ParticipantState.ASSIGNED and p.run_id is not None:
            commands.append(start_command(job, p, run_id=p.run_id,
                                          command_id=command_id(dispatch_id, "start", p.id)))
    return commands


def _page(daemon: Daemon, skip: int) -> Callable[[], Awaitable[list[Job]]]:
    return lambda: daemon.store.find_active(JobStatus.IN_PROGRESS, limit=PAGE, skip=skip)


async def reconcile(daemon: Daemon) -> dict[str, int]:
    """Run once at startup; returns counts for the log and tests."""
    effects = daemon.effects
    running = 0
    commands: list[Command] = []
    skip = 0
    while True:
        page = await effects.retry(_page(daemon, skip), "MongoDB (find running jobs)",
                                   shield=False)
        running += len(page)
        for job in page:
            commands.extend(recovery_commands(job))
        if len(page) < PAGE:
            break
        skip += PAGE
    await effects.commit(commands, ())
    counts = {"in_progress": running, "commands": len(commands)}
    log.info("startup reconciliation done", **counts)
    daemon.wake_admission()  # queued jobs: admission scans them oldest first
    return counts
