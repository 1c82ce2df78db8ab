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
(``orchestrator.core.draft.Draft``). The handlers live in ``orchestrator.core.handlers``, the
joint-state table in ``orchestrator.core.joint``; the README's diagram and
docs/state-machine.md are drawn from the two tables by ``orchestrator.core.diagram``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator.core import handlers as h
from orchestrator.core.deadlines import start_deadline_at
from orchestrator.core.draft import Draft
from orchestrator.core.events import EVENT_TYPES, PARTICIPANT_EVENT_TYPES, Event, ParticipantEvent
from orchestrator.core.job import HistoryEntry, Job, Participant
from orchestrator.core.joint import JOINT, Joint, JointRule, first_rule, settle
from orchestrator.core.records import Decision, Outcome
from orchestrator.core.spec import JobSpec
from orchestrator.core.status import TERMINAL, JobStatus, Role

__all__ = ["JOINT", "RULES", "Joint", "JointRule", "Rule", "decide", "first_rule", "new_job"]


def new_job(job_id: str, spec: JobSpec, now: datetime, *, event_id: str = "submit") -> Job:
    """A fresh NOT_STARTED job with one participant per spec entry, its start deadline set."""
    participants = {
        pid: Participant(id=pid, role=Role.SERVER if pid == "server" else Role.CLIENT,
                         worker=spec.participant_spec(pid).worker)
        for pid in spec.participant_ids()
    }
    return Job(id=job_id, spec=spec, participants=participants, created_at=now, updated_at=now,
               idempotency_key=spec.idempotency_key,
               deadline_at=start_deadline_at(spec, now),
               history=[HistoryEntry(from_status=None, to_status=JobStatus.NOT_STARTED, at=now,
                                     event_id=event_id, reason="submitted", rule="submission")])


# --- the event table -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Rule:
    """One entry of the event table: what the event does, and where it can lead the job."""

    handler: h.Handler
    summary: str
    targets: frozenset[JobStatus]


def _rule(handler: h.Handler, summary: str, *targets: JobStatus) -> Rule:
    return Rule(handler, summary, frozenset(targets))


#: (event type) -> (handler, summary) for the participant events, wherever a job is.
_PARTICIPANT: dict[str, tuple[h.Handler, str]] = {
    "participant.started": (h.started, "the participant runs"),
    "participant.heartbeat": (h.heartbeat, "liveness (and the round it is in)"),
    "round.started": (h.round_started, "the server starts a round"),
    "round.metrics": (h.metrics, "a metrics row; the latest round's summary"),
    "checkpoint.saved": (h.checkpoint, "a manifest row; the final one may end the job"),
    "participant.finished": (h.finished, "the participant finished"),
    "participant.failed": (h.failed, "the participant failed"),
    "participant.stopped": (h.stopped, "the participant stopped"),
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
        h.dispatch, "dispatch (refused if too few clients)",
        JobStatus.NOT_STARTED, JobStatus.IN_PROGRESS),
    (JobStatus.NOT_STARTED, "cancel.requested"): _rule(
        h.cancel_queued, "cancel before dispatch", JobStatus.FINISHED_CANCELLED),
    (JobStatus.NOT_STARTED, "deadline.expired"): _rule(
        h.deadline, "the start deadline", JobStatus.NOT_STARTED, JobStatus.FINISHED_WITH_ERROR),
    (JobStatus.NOT_STARTED, "job.unschedulable"): _rule(
        h.unschedulable, "a worker has the wrong role or lacks the workload",
        JobStatus.FINISHED_WITH_ERROR),
    **{(JobStatus.NOT_STARTED, t): _rule(
        h.refuse("not dispatched yet"), "refused", JobStatus.NOT_STARTED) for t in _PARTICIPANT},
    (JobStatus.IN_PROGRESS, "job.dispatched"): _rule(
        h.refuse("already dispatched"), "refused", JobStatus.IN_PROGRESS),
    (JobStatus.IN_PROGRESS, "job.unschedulable"): _rule(
        h.refuse("already dispatched"), "refused", JobStatus.IN_PROGRESS),
    (JobStatus.IN_PROGRESS, "cancel.requested"): _rule(
        h.cancel_running, "stop every active participant",
        JobStatus.IN_PROGRESS, JobStatus.FINISHED_CANCELLED),
    (JobStatus.IN_PROGRESS, "deadline.expired"): _rule(
        h.deadline, "a deadline", JobStatus.IN_PROGRESS, JobStatus.FINISHED_SUCCESSFULLY,
        JobStatus.FINISHED_WITH_ERROR, JobStatus.FINISHED_CANCELLED),
    **{(JobStatus.IN_PROGRESS, t): _rule(fn, s, *_PARTICIPANT_TARGETS.get(
        t, (JobStatus.IN_PROGRESS,))) for t, (fn, s) in _PARTICIPANT.items()},
    **{(s, t): _rule(h.ignore, "ignored: the status never changes", s)
       for s in TERMINAL
       for t in ("job.dispatched", "cancel.requested", "deadline.expired", "job.unschedulable")},
    **{(s, t): _rule(fn, f"late data still recorded: {summary}", s)
       for s in TERMINAL for t, (fn, summary) in _PARTICIPANT.items()},
}


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
            settle(d)
        d.joint_due = False
        d.tell_server()
        applied = d.edits > before
        if not applied and not reason.startswith(("refused", "ignored")):
            reason = f"no change: {reason}"
        outcomes.append(Outcome(e.event_id, job.id, applied, reason))
    return d.decision(outcomes)


assert all((s, t) in RULES for s in JobStatus for t in EVENT_TYPES), "the table is not total"
