"""What each event does to a job: the handlers that ``RULES`` (``orchestrator.core.machine``)
names, one per event kind.

Each takes the decision's working copy (``orchestrator.core.draft.Draft``) and the event,
changes the job only through the draft, and returns the reason (refusals start with
"refused", no-ops with "ignored"). Pure, like the rest of the core.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from orchestrator.core.commands import command_id, start_command
from orchestrator.core.deadlines import ACTIVE_STATES, due
from orchestrator.core.draft import Draft
from orchestrator.core.events import (
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
    ParticipantStopped,
    RoundMetrics,
    RoundStarted,
)
from orchestrator.core.job import CheckpointRef, JobError, Participant
from orchestrator.core.joint import final_recorded
from orchestrator.core.records import CheckpointRecord, MetricRecord
from orchestrator.core.status import TERMINAL, ErrorCode, JobStatus, ParticipantState, Phase, Role

Handler = Callable[[Draft, Any], str]


def dispatch(d: Draft, e: JobDispatched) -> str:
    job = d.original
    unknown = sorted(set(e.assignments) - set(job.participants))
    if unknown:
        return f"refused: dispatch names unknown participants {unknown}"
    if "server" not in e.assignments:
        return "refused: dispatch without the server participant"
    clients = len(e.assignments) - 1
    if clients < job.spec.required_clients:
        return f"refused: dispatch assigns {clients} clients, {job.spec.required_clients} required"
    for p in job.participants.values():
        run_id = e.assignments.get(p.id)
        if run_id is None:
            d.update(p, state=ParticipantState.SKIPPED)
            continue
        d.update(p, state=ParticipantState.ASSIGNED, run_id=run_id, assigned_at=d.now,
                 last_seen=d.now)
        d.commands.append(start_command(job, p, run_id=run_id,
                                        command_id=command_id(e.event_id, "start", p.id)))
    skipped = len(job.participants) - len(e.assignments)
    reason = "dispatched" + (f" ({skipped} unavailable clients skipped)" if skipped else "")
    d.set("phase", Phase.STARTING)
    d.set_status(JobStatus.IN_PROGRESS, reason)
    return reason


def cancel_queued(d: Draft, e: CancelRequested) -> str:
    d.set_status(JobStatus.FINISHED_CANCELLED, e.reason)
    return "cancelled before dispatch"


def cancel_running(d: Draft, e: CancelRequested) -> str:
    if d.get("phase") is Phase.CANCELLING:
        return "cancel already in progress"
    d.set("phase", Phase.CANCELLING)
    d.set("cancel_requested_at", d.now)
    d.stop_active(e.reason)
    return "cancelling: stop commands sent"


def deadline(d: Draft, e: DeadlineExpired) -> str:
    if not any(x.kind == e.kind and x.participant == e.participant for x in due(d, d.now)):
        return f"deadline {e.kind} not due (state moved on)"
    d.rule = f"the {e.kind} deadline"
    t = d.spec.timeouts
    if e.kind == "heartbeat" and e.participant is not None:
        p = d.participants[e.participant]
        d.update(p, state=ParticipantState.FAILED, error=JobError(
            code=ErrorCode.WORKER_LOST, participant=p.id,
            message=f"no heartbeat from {p.id} on worker {p.worker} for {t.heartbeat_s:g}s"))
        return "participant lost"
    if e.kind == "cancel_grace":
        d.set_status(JobStatus.FINISHED_CANCELLED, f"cancel grace of {t.cancel_grace_s:g}s over")
        return "cancel grace expired"
    if e.kind == "start":
        why = e.message or "workers not available"
        error = JobError(code=ErrorCode.CANNOT_SCHEDULE,
                         message=f"{why}; gave up after the start timeout of {t.start_s:g}s")
        d.set_status(JobStatus.FINISHED_WITH_ERROR, "cannot schedule", error)
        return "start deadline expired"
    if e.kind == "finalize":
        if final_recorded(d):
            # The result is complete; clients that did not end after it are stopped.
            late = sorted(p.id for p in d.participants.values() if p.state in ACTIVE_STATES)
            d.set_status(JobStatus.FINISHED_SUCCESSFULLY,
                         f"server finished; {', '.join(late)} still running, stopped")
            return "finalize deadline expired: clients stopped"
        wanted = d.participants["server"].final_checkpoint
        error = JobError(code=ErrorCode.CHECKPOINT_FAILED, participant="server",
                         message=f"final checkpoint {wanted} was never recorded")
        d.set_status(JobStatus.FINISHED_WITH_ERROR, "final checkpoint missing", error)
        return "finalize deadline expired"
    limit, what = (t.round_s, f"round {d.get('round')}") if e.kind == "round" else (t.job_s, "job")
    d.set_status(JobStatus.FINISHED_WITH_ERROR, f"{what} timed out", JobError(
        code=ErrorCode.TIMED_OUT, message=f"{what} exceeded its timeout of {limit:g}s"))
    return f"{e.kind} deadline expired"


def unschedulable(d: Draft, e: JobUnschedulable) -> str:
    error = JobError(code=ErrorCode.CANNOT_SCHEDULE, participant=e.participant, message=e.message)
    d.set_status(JobStatus.FINISHED_WITH_ERROR, "cannot schedule", error)
    return "cannot schedule"


def progress(d: Draft, e: ParticipantEvent, **changes: Any) -> Participant:
    """Liveness, forward only: a ``seq`` above the highest seen refreshes ``last_seen``;
    any participant event of a running job means it has started (unless the event itself
    moves it further: a finish, failure or stop as its first word)."""
    p = d.participants[e.participant]
    if e.seq > p.last_seq:
        changes.update(last_seq=e.seq, last_seen=d.now)
    if p.state.rank < ParticipantState.STARTED.rank:
        changes.setdefault("state", ParticipantState.STARTED)
    d.update(p, **changes)
    return d.participants[e.participant]


def started(d: Draft, e: ParticipantEvent) -> str:
    progress(d, e)
    return e.type


def heartbeat(d: Draft, e: Heartbeat) -> str:
    p = d.participants[e.participant]
    progress(d, e, **({"round": e.round} if e.round is not None and e.round > p.round else {}))
    return e.type


def round_started(d: Draft, e: RoundStarted) -> str:
    p = d.participants[e.participant]
    progress(d, e, **({"round": e.round} if e.round > p.round else {}))
    if p.role is Role.SERVER and e.round > d.get("round") and d.get("status") not in TERMINAL:
        d.set("round", e.round)
        d.set("round_started_at", d.now)
        return f"round {e.round} started"
    return e.type


def metrics(d: Draft, e: RoundMetrics) -> str:
    p = d.participants[e.participant]
    metrics = dict(e.metrics)
    d.metrics.append(MetricRecord(d.original.id, p.id, p.role, e.round, metrics, d.now,
                                  e.event_id))
    d.edits += 1
    changes: dict[str, Any] = {"round": e.round} if e.round > p.round else {}
    if p.metrics_round is None or e.round >= p.metrics_round:
        changes.update(metrics_round=e.round, metrics=metrics)
    progress(d, e, **changes)
    return f"metrics for round {e.round}"


def checkpoint(d: Draft, e: CheckpointSaved) -> str:
    p = progress(d, e)
    d.checkpoints.append(CheckpointRecord(d.original.id, p.id, e.round, e.key, e.size,
                                          e.sha256, e.parent, e.final, d.now, e.event_id))
    d.edits += 1
    ref = CheckpointRef(key=e.key, round=e.round, participant=p.id, sha256=e.sha256,
                        size=e.size)
    latest = d.get("latest_checkpoint")
    if latest is None or (ref.round, ref.key) >= (latest.round, latest.key):
        d.set("latest_checkpoint", ref)
    if e.final and p.role is Role.SERVER:
        d.set("final_checkpoint", ref)
        d.joint_due = True  # a finalizing job may now succeed
    return f"checkpoint {e.key} recorded"


def end(d: Draft, e: ParticipantEvent, state: ParticipantState, **changes: Any) -> str:
    """A participant's last word: forward only, so a late or repeated one changes nothing."""
    p = d.participants[e.participant]
    if state.rank > p.state.rank:
        changes.update(state=state, finished_at=d.now)
    else:
        changes = {}
    progress(d, e, **changes)
    return e.type


def finished(d: Draft, e: ParticipantFinished) -> str:
    return end(d, e, ParticipantState.FINISHED, final_checkpoint=e.final_checkpoint)


def failed(d: Draft, e: ParticipantFailed) -> str:
    return end(d, e, ParticipantState.FAILED, error=JobError(code=e.code, message=e.message,
                                                participant=e.participant))


def stopped(d: Draft, e: ParticipantStopped) -> str:
    return end(d, e, ParticipantState.STOPPED, error=JobError(
        code=ErrorCode.WORKER_SHUTDOWN, participant=e.participant,
        message=e.reason or f"{e.participant} stopped"))


def refuse(why: str) -> Handler:
    def refuse(d: Draft, e: Event) -> str:
        return f"refused: {e.type} while job is {d.get('status')}: {why}"
    return refuse


def ignore(d: Draft, e: Event) -> str:
    return f"ignored: job is {d.get('status')}"
