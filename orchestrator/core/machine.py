"""The job state machine: two tables and ``decide(job, events, now)``.

Theory of operation
-------------------
A job changes only here. ``decide`` is pure: no I/O, no clock, no randomness; the events of
one daemon batch for one job and the time come in, a ``Decision`` comes out.

Two tables hold the rules, as h11 keeps its protocol state:

``RULES`` — the event table. For each (job status, event type) it names the handler that
decides what the event does: dispatch the job, start a cancel, expire a deadline, fold a
participant's liveness or progress into it, record a checkpoint, end a participant, refuse,
or ignore. FINISHED_* absorb every event: the status never changes, but late metrics and
checkpoints are still recorded.

``JOINT`` — the joint-state table: what the participants' states mean for an IN_PROGRESS
job. Read top to bottom, the first rule whose condition holds wins: all stopped after a
cancel ends it cancelled, a failed or stopped server ends it with an error, a finished server
whose final checkpoint is recorded ends it successfully (or waits in ``finalizing``), too
few healthy clients end it with an error, otherwise it is ``running`` or ``starting``. It is
consulted after every event that changed a participant's state, the phase or the round.

Order-insensitivity comes from three choices: a participant's state only moves forward
(assigned < started < finished | failed | stopped); the job's status follows from the
participants' states through ``JOINT`` rather than from the order of events; and liveness,
metrics and checkpoints are keyed (highest ``seq`` per participant, latest metrics per round,
rows per (job, participant, round)). So duplicates change nothing and late or reordered
events land in the same place.

Deadlines (start, heartbeat, round, job, cancel grace, finalize) are derived from the job's
own state by ``deadlines``, in one place; the job keeps the earliest as ``deadline_at`` for
the reaper's indexed query. Handlers change the job only through the decision's working copy
(``orchestrator.core.draft.Draft``); the README's diagram and docs/state-machine.md are drawn
from the two tables by ``orchestrator.core.diagram``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from orchestrator.core.commands import (
    command_id,
    start_command,
)
from orchestrator.core.deadlines import ACTIVE_STATES, due, next_deadline_at
from orchestrator.core.draft import DOWN_STATES, HEALTHY_STATES, Draft
from orchestrator.core.events import (
    EVENT_TYPES,
    PARTICIPANT_EVENT_TYPES,
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
from orchestrator.core.job import CheckpointRef, HistoryEntry, Job, JobError, Participant
from orchestrator.core.records import CheckpointRecord, Decision, MetricRecord, Outcome
from orchestrator.core.spec import JobSpec
from orchestrator.core.status import (
    TERMINAL,
    ErrorCode,
    JobStatus,
    ParticipantState,
    Phase,
    Role,
)


def new_job(job_id: str, spec: JobSpec, now: datetime, *, event_id: str = "submit") -> Job:
    """A fresh NOT_STARTED job with one participant per spec entry, its start deadline set."""
    participants = {
        pid: Participant(id=pid, role=Role.SERVER if pid == "server" else Role.CLIENT,
                         worker=spec.participant_spec(pid).worker)
        for pid in spec.participant_ids()
    }
    job = Job(id=job_id, spec=spec, participants=participants, created_at=now, updated_at=now,
              idempotency_key=spec.idempotency_key,
              history=[HistoryEntry(from_status=None, to_status=JobStatus.NOT_STARTED, at=now,
                                    event_id=event_id, reason="submitted", rule="submission")])
    return replace(job, deadline_at=next_deadline_at(job))


# --- the event table's handlers -----------------------------------------------------------------
#
# Each takes the draft and the event and returns the reason (refusals start with "refused").

Handler = Callable[[Draft, Any], str]


def _dispatch(d: Draft, e: JobDispatched) -> str:
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


def _cancel_queued(d: Draft, e: CancelRequested) -> str:
    d.set_status(JobStatus.FINISHED_CANCELLED, e.reason)
    return "cancelled before dispatch"


def _cancel_running(d: Draft, e: CancelRequested) -> str:
    if d.get("phase") is Phase.CANCELLING:
        return "cancel already in progress"
    d.set("phase", Phase.CANCELLING)
    d.set("cancel_requested_at", d.now)
    d.stop_active(e.reason)
    return "cancelling: stop commands sent"


def _deadline(d: Draft, e: DeadlineExpired) -> str:
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
        server = d.participants["server"]
        final = d.get("final_checkpoint")
        if server.final_checkpoint is None or (
                final is not None and final.key == server.final_checkpoint):
            # The result is complete; clients that did not end after it are stopped.
            late = sorted(p.id for p in d.participants.values() if p.state in ACTIVE_STATES)
            d.set_status(JobStatus.FINISHED_SUCCESSFULLY,
                         f"server finished; {', '.join(late)} still running, stopped")
            return "finalize deadline expired: clients stopped"
        error = JobError(code=ErrorCode.CHECKPOINT_FAILED, participant="server",
                         message=f"final checkpoint {server.final_checkpoint} was never "
                                 "recorded")
        d.set_status(JobStatus.FINISHED_WITH_ERROR, "final checkpoint missing", error)
        return "finalize deadline expired"
    limit, what = (t.round_s, f"round {d.get('round')}") if e.kind == "round" else (t.job_s, "job")
    d.set_status(JobStatus.FINISHED_WITH_ERROR, f"{what} timed out", JobError(
        code=ErrorCode.TIMED_OUT, message=f"{what} exceeded its timeout of {limit:g}s"))
    return f"{e.kind} deadline expired"


def _unschedulable(d: Draft, e: JobUnschedulable) -> str:
    error = JobError(code=ErrorCode.CANNOT_SCHEDULE, participant=e.participant, message=e.message)
    d.set_status(JobStatus.FINISHED_WITH_ERROR, "cannot schedule", error)
    return "cannot schedule"


def _progress(d: Draft, e: ParticipantEvent, **changes: Any) -> Participant:
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


def _started(d: Draft, e: ParticipantEvent) -> str:
    _progress(d, e)
    return e.type


def _heartbeat(d: Draft, e: Heartbeat) -> str:
    p = d.participants[e.participant]
    _progress(d, e, **({"round": e.round} if e.round is not None and e.round > p.round else {}))
    return e.type


def _round_started(d: Draft, e: RoundStarted) -> str:
    p = d.participants[e.participant]
    _progress(d, e, **({"round": e.round} if e.round > p.round else {}))
    if p.role is Role.SERVER and e.round > d.get("round") and d.get("status") not in TERMINAL:
        d.set("round", e.round)
        d.set("round_started_at", d.now)
        return f"round {e.round} started"
    return e.type


def _metrics(d: Draft, e: RoundMetrics) -> str:
    p = d.participants[e.participant]
    metrics = dict(e.metrics)
    d.metrics.append(MetricRecord(d.original.id, p.id, p.role, e.round, metrics, d.now,
                                  e.event_id))
    d.edits += 1
    changes: dict[str, Any] = {"round": e.round} if e.round > p.round else {}
    if p.metrics_round is None or e.round >= p.metrics_round:
        changes.update(metrics_round=e.round, metrics=metrics)
    _progress(d, e, **changes)
    return f"metrics for round {e.round}"


def _checkpoint(d: Draft, e: CheckpointSaved) -> str:
    p = _progress(d, e)
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


def _end(d: Draft, e: ParticipantEvent, state: ParticipantState, **changes: Any) -> str:
    """A participant's last word: forward only, so a late or repeated one changes nothing."""
    p = d.participants[e.participant]
    if state.rank > p.state.rank:
        changes.update(state=state, finished_at=d.now)
    else:
        changes = {}
    _progress(d, e, **changes)
    return e.type


def _finished(d: Draft, e: ParticipantFinished) -> str:
    return _end(d, e, ParticipantState.FINISHED, final_checkpoint=e.final_checkpoint)


def _failed(d: Draft, e: ParticipantFailed) -> str:
    return _end(d, e, ParticipantState.FAILED, error=JobError(code=e.code, message=e.message,
                                                participant=e.participant))


def _stopped(d: Draft, e: ParticipantStopped) -> str:
    return _end(d, e, ParticipantState.STOPPED, error=JobError(
        code=ErrorCode.WORKER_SHUTDOWN, participant=e.participant,
        message=e.reason or f"{e.participant} stopped"))


def _refuse(why: str) -> Handler:
    def refuse(d: Draft, e: Event) -> str:
        return f"refused: {e.type} while job is {d.get('status')}: {why}"
    return refuse


def _ignore(d: Draft, e: Event) -> str:
    return f"ignored: job is {d.get('status')}"


@dataclass(frozen=True, slots=True)
class Rule:
    """One entry of the event table: what the event does, and where it can lead the job."""

    handler: Handler
    summary: str
    targets: frozenset[JobStatus]


def _rule(handler: Handler, summary: str, *targets: JobStatus) -> Rule:
    return Rule(handler, summary, frozenset(targets))


#: (event type) -> (handler, summary) for the participant events, wherever a job is.
_PARTICIPANT: dict[str, tuple[Handler, str]] = {
    "participant.started": (_started, "the participant runs"),
    "participant.heartbeat": (_heartbeat, "liveness (and the round it is in)"),
    "round.started": (_round_started, "the server starts a round"),
    "round.metrics": (_metrics, "a metrics row; the latest round's summary"),
    "checkpoint.saved": (_checkpoint, "a manifest row; the final one may end the job"),
    "participant.finished": (_finished, "the participant finished"),
    "participant.failed": (_failed, "the participant failed"),
    "participant.stopped": (_stopped, "the participant stopped"),
}
#: Where a participant event can lead an IN_PROGRESS job (through ``JOINT``).
_PARTICIPANT_TARGETS: dict[str, tuple[JobStatus, ...]] = {
    "checkpoint.saved": (JobStatus.IN_PROGRESS, JobStatus.FINISHED_SUCCESSFULLY),
    # (a finish never lowers the healthy count: it cannot end the job with an error)
    "participant.finished": (JobStatus.IN_PROGRESS, JobStatus.FINISHED_SUCCESSFULLY,
                             JobStatus.FINISHED_CANCELLED),
    # (the last client to end while the finished server waits for it ends the job well)
    "participant.failed": (JobStatus.IN_PROGRESS, JobStatus.FINISHED_SUCCESSFULLY,
                           JobStatus.FINISHED_WITH_ERROR, JobStatus.FINISHED_CANCELLED),
    "participant.stopped": (JobStatus.IN_PROGRESS, JobStatus.FINISHED_SUCCESSFULLY,
                            JobStatus.FINISHED_WITH_ERROR, JobStatus.FINISHED_CANCELLED),
}

#: The event table: (status, event type) -> rule. Total: every pair has a rule.
RULES: dict[tuple[JobStatus, str], Rule] = {
    (JobStatus.NOT_STARTED, "job.dispatched"): _rule(
        _dispatch, "dispatch (refused if too few clients)",
        JobStatus.NOT_STARTED, JobStatus.IN_PROGRESS),
    (JobStatus.NOT_STARTED, "cancel.requested"): _rule(
        _cancel_queued, "cancel before dispatch", JobStatus.FINISHED_CANCELLED),
    (JobStatus.NOT_STARTED, "deadline.expired"): _rule(
        _deadline, "the start deadline", JobStatus.NOT_STARTED, JobStatus.FINISHED_WITH_ERROR),
    (JobStatus.NOT_STARTED, "job.unschedulable"): _rule(
        _unschedulable, "a worker has the wrong role or lacks the workload",
        JobStatus.FINISHED_WITH_ERROR),
    **{(JobStatus.NOT_STARTED, t): _rule(
        _refuse("not dispatched yet"), "refused", JobStatus.NOT_STARTED) for t in _PARTICIPANT},
    (JobStatus.IN_PROGRESS, "job.dispatched"): _rule(
        _refuse("already dispatched"), "refused", JobStatus.IN_PROGRESS),
    (JobStatus.IN_PROGRESS, "job.unschedulable"): _rule(
        _refuse("already dispatched"), "refused", JobStatus.IN_PROGRESS),
    (JobStatus.IN_PROGRESS, "cancel.requested"): _rule(
        _cancel_running, "stop every active participant",
        JobStatus.IN_PROGRESS, JobStatus.FINISHED_CANCELLED),
    (JobStatus.IN_PROGRESS, "deadline.expired"): _rule(
        _deadline, "a deadline", JobStatus.IN_PROGRESS, JobStatus.FINISHED_SUCCESSFULLY,
        JobStatus.FINISHED_WITH_ERROR, JobStatus.FINISHED_CANCELLED),
    **{(JobStatus.IN_PROGRESS, t): _rule(h, s, *_PARTICIPANT_TARGETS.get(
        t, (JobStatus.IN_PROGRESS,))) for t, (h, s) in _PARTICIPANT.items()},
    **{(s, t): _rule(_ignore, "ignored: the status never changes", s)
       for s in TERMINAL
       for t in ("job.dispatched", "cancel.requested", "deadline.expired", "job.unschedulable")},
    **{(s, t): _rule(h, f"late data still recorded: {summary}", s)
       for s in TERMINAL for t, (h, summary) in _PARTICIPANT.items()},
}


# --- the joint-state table ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Joint:
    """What ``JOINT`` looks at: the participants' states, summed up in one pass."""

    cancelling: bool
    active: int
    server: Participant
    final_recorded: bool
    healthy_clients: int
    required_clients: int
    client_error: JobError | None
    round: int


@dataclass(frozen=True, slots=True)
class JointRule:
    """When ``when`` holds, the job ends in ``ends`` (with ``reason`` and ``error``) or,
    when ``ends`` is None, stays IN_PROGRESS in ``phase`` (None: as it is)."""

    name: str
    when: Callable[[Joint], bool]
    ends: JobStatus | None = None
    phase: Phase | None = None
    reason: Callable[[Joint], str] = lambda j: ""
    error: Callable[[Joint], JobError | None] = lambda j: None


JOINT: tuple[JointRule, ...] = (
    JointRule("cancelled: nobody active", lambda j: j.cancelling and j.active == 0,
              ends=JobStatus.FINISHED_CANCELLED,
              reason=lambda j: "cancelled: all participants stopped"),
    JointRule("cancelling: waiting for stops", lambda j: j.cancelling),
    JointRule("server down", lambda j: j.server.state in DOWN_STATES,
              ends=JobStatus.FINISHED_WITH_ERROR,
              reason=lambda j: f"server {j.server.state}", error=lambda j: j.server.error),
    JointRule("server finished, final checkpoint recorded, clients done",
              lambda j: (j.server.state is ParticipantState.FINISHED and j.final_recorded
                         and j.active == 0),
              ends=JobStatus.FINISHED_SUCCESSFULLY, reason=lambda j: "server finished"),
    JointRule("server finished, final checkpoint or clients pending",
              lambda j: j.server.state is ParticipantState.FINISHED, phase=Phase.FINALIZING),
    JointRule("too few healthy clients", lambda j: j.healthy_clients < j.required_clients,
              ends=JobStatus.FINISHED_WITH_ERROR, error=lambda j: j.client_error,
              reason=lambda j: f"{j.healthy_clients} healthy clients left, "
                               f"{j.required_clients} required"),
    JointRule("a round under way", lambda j: j.round >= 1, phase=Phase.RUNNING),
    JointRule("starting", lambda j: True, phase=Phase.STARTING),
)


def _joint(d: Draft) -> Joint:
    parts = d.participants.values()
    server = d.participants["server"]
    wanted = server.final_checkpoint
    final = d.get("final_checkpoint")
    clients = [p for p in parts if p.role is Role.CLIENT]
    return Joint(
        cancelling=d.get("phase") is Phase.CANCELLING,
        active=sum(p.state in ACTIVE_STATES for p in parts),
        server=server,
        final_recorded=wanted is None or (final is not None and final.key == wanted),
        healthy_clients=sum(p.state in HEALTHY_STATES for p in clients),
        required_clients=d.original.spec.required_clients,
        client_error=next((p.error for p in clients
                           if p.state in DOWN_STATES and p.error is not None), None),
        round=d.get("round"),
    )


def first_rule(state: Joint) -> JointRule:
    """The first rule of ``JOINT`` that holds (the last one always does)."""
    return next(rule for rule in JOINT if rule.when(state))


def _settle(d: Draft) -> None:
    state = _joint(d)
    rule = first_rule(state)
    if rule.ends is not None:
        d.rule = f"joint: {rule.name}"
        d.set_status(rule.ends, rule.reason(state), rule.error(state))
    elif rule.phase is not None:
        d.set("phase", rule.phase)


# --- decide ---------------------------------------------------------------------------------------

def _sender_problem(job: Job, e: ParticipantEvent) -> str | None:
    p = job.participants.get(e.participant)
    if p is None:
        return f"refused: {e.participant} is not a participant of job {job.id}"
    if p.worker != e.worker:
        return f"refused: {e.participant} belongs to worker {p.worker}, event came from {e.worker}"
    return None


def decide(job: Job, events: Sequence[Event], now: datetime) -> Decision:
    """Apply one batch's events for one job, in order. Pure; never raises for bad input:
    each refused event gets its reason in ``outcomes``."""
    d = Draft(job, now)
    outcomes: list[Outcome] = []
    for e in events:
        if e.job_id != job.id:
            outcomes.append(Outcome(e.event_id, e.job_id, False,
                                    f"refused: event for job {e.job_id} applied to {job.id}"))
            continue
        status = d.get("status")
        rule = RULES[(status, e.type)]
        problem = (_sender_problem(job, e) if isinstance(e, PARTICIPANT_EVENT_TYPES)
                   else None)
        if problem is not None:
            outcomes.append(Outcome(e.event_id, job.id, False, problem))
            continue
        d.event_id, d.rule = e.event_id, rule.summary
        before = d.edits
        reason = rule.handler(d, e)
        if d.joint_due and d.get("status") is JobStatus.IN_PROGRESS:
            _settle(d)
        d.joint_due = False
        d.tell_server()
        applied = d.edits > before
        if not applied and not reason.startswith(("refused", "ignored")):
            reason = f"no change: {reason}"
        outcomes.append(Outcome(e.event_id, job.id, applied, reason))
    return d.decision(outcomes)


assert all((s, t) in RULES for s in JobStatus for t in EVENT_TYPES), "the table is not total"
