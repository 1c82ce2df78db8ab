"""Startup reconciliation: pick up every non-terminal job where the last daemon left it.

* NOT_STARTED jobs simply go back to admission (it scans them oldest first).
* IN_PROGRESS jobs: participants still ASSIGNED get their ``StartParticipant`` again (same
  command id and run id as the original, so a worker that already has it ignores it);
  CANCELLING jobs get ``StopParticipant`` for every still-active participant.
* The bus seals each command as it is sent (``RunAuth.seal``): the secrets are re-derived from
  the daemon key and the stored run ids, so a re-sent start carries the same secret.
* Everything else (silent participants, rounds that overran) is the deadlines' business.
"""

from __future__ import annotations

from functools import partial

from orchestrator.core import (
    Command,
    Job,
    JobStatus,
    ParticipantState,
    Phase,
    StopParticipant,
    command_id,
    start_command,
)
from orchestrator.daemon.retry import Retrier
from orchestrator.logs import get_logger
from orchestrator.store import JobStore

log = get_logger("orchestrator.daemon.reconcile")
PAGE = 500


def dispatch_event_id(job_id: str) -> str:
    """Deterministic: the start commands' ids derive from it (workers dedupe on them)."""
    return f"dispatch.{job_id}"


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
                    job_id=job.id, participant=p.id, worker=p.worker, run_id=p.run_id,
                    reason="cancelled (re-sent after a daemon restart)"))
        return commands
    dispatch_id = dispatch_event_id(job.id)
    for p in job.participants.values():
        if p.state is ParticipantState.ASSIGNED and p.run_id is not None:
            commands.append(start_command(job, p, run_id=p.run_id,
                                          command_id=command_id(dispatch_id, "start", p.id)))
    return commands


async def reconcile(store: JobStore, retry: Retrier) -> list[Command]:
    """Run once at startup: the commands that bring workers in line with the stored jobs."""
    running = 0
    commands: list[Command] = []
    skip = 0
    while True:
        page = await retry(partial(store.find_active, JobStatus.IN_PROGRESS, limit=PAGE,
                                   skip=skip), "MongoDB (find running jobs)", shield=False)
        running += len(page)
        for job in page:
            commands.extend(recovery_commands(job))
        if len(page) < PAGE:
            break
        skip += PAGE
    log.info("startup reconciliation done", in_progress=running, commands=len(commands))
    return commands
