"""decide(job, event, now) -> Decision: the only place a job's state changes.

Theory of operation
-------------------
``decide`` is pure: no I/O, no clock, no randomness; ids and time come in as arguments.
It looks up the rule for (job.status, event.type) in the transitions table, runs that rule's
handler and checks the resulting status against the rule's targets.

Order-insensitivity comes from three choices:

* a participant's state only moves forward (assigned < started < finished | failed | stopped);
* the job's status is re-derived from the participants' states after every participant
  event (``_evaluate``), rather than from the sequence of events that led there;
* metrics and checkpoints are keyed records (job, participant, round), summaries keep the
  highest round, and liveness only advances on a ``seq`` above the highest seen.

So a duplicated event yields an identical job (``changed`` is False), and a late or
reordered event lands in the same place. FINISHED_* statuses absorb every event; metrics and
checkpoints that arrive afterwards are still recorded, never lost.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from orchestrator.core._types import evolve, fast_tuple, is_name, set_in_place
from orchestrator.core.commands import Command, StartParticipant, StopParticipant
from orchestrator.core.deadlines import is_due, next_deadline_at, running_deadline_at
from orchestrator.core.events import (
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
from orchestrator.core.spec import client_index
from orchestrator.core.status import ErrorCode, JobStatus, ParticipantState, Phase, Role
from orchestrator.core.transitions import rule_for

# The records and the decision are NamedTuples, not frozen dataclasses: they are built once
# per event on the daemon's hot path, where a frozen dataclass costs several times as much to
# create (``bench/bench_core.py`` prints both).
# The liveness shortcut builds its decision with ``fast_tuple``.


class MetricRecord(NamedTuple):
    """One (job, participant, round) metrics row; upserted, so resends are harmless."""

    job_id: str
    participant: str
    role: Role
    round: int
    metrics: dict[str, float]
    at: datetime
    event_id: str


class CheckpointRecord(NamedTuple):
    """One manifest row (job, round, participant) -> object key, size, sha256, parent."""

    job_id: str
    participant: str
    round: int
    key: str
    size: int
    sha256: str
    parent: str | None
    final: bool
    at: datetime
    event_id: str


class Decision(NamedTuple):
    job: Job
    changed: bool
    reason: str
    commands: tuple[Command, ...] = ()
    metrics: tuple[MetricRecord, ...] = ()
    checkpoints: tuple[CheckpointRecord, ...] = ()
    #: True when the change is liveness or metrics of a running participant only: nothing a
    #: watcher is told about (no status, phase, round, error, checkpoint or state change).
    quiet: bool = False

    @property
    def applied(self) -> bool:
        """True when anything is to be written: the job, metrics or manifest rows."""
        return self.changed or bool(self.metrics) or bool(self.checkpoints)


_SILENT = ("refused", "ignored", "no change")


class TransitionError(AssertionError):
    """A handler produced a status its rule does not allow: a bug in the core."""


@dataclass(slots=True)
class _Draft:
    """Mutable scratchpad for one decision; frozen into a ``Decision`` at the end."""

    job: Job
    event_id: str
    now: datetime
    updates: dict[str, Any] = field(default_factory=dict)
    participants: dict[str, Participant] = field(default_factory=dict)
    commands: list[Command] = field(default_factory=list)
    metrics: list[MetricRecord] = field(default_factory=list)
    checkpoints: list[CheckpointRecord] = field(default_factory=list)
    history: list[HistoryEntry] = field(default_factory=list)
    touched: dict[str, set[str]] = field(default_factory=dict)  # participant -> fields set

    def get(self, name: str) -> Any:
        return self.updates.get(name, getattr(self.job, name))

    def participant(self, pid: str) -> Participant:
        return self.participants.get(pid) or self.job.participants[pid]

    def set_participant(self, p: Participant, **changes: Any) -> Participant:
        updated = evolve(p, changes)
        self.participants[p.id] = updated
        self.touched.setdefault(p.id, set()).update(changes)
        return updated

    def all_participants(self) -> list[Participant]:
        return [self.participant(pid) for pid in self.job.participants]

    def set_status(self, status: JobStatus, reason: str, *, error: JobError | None = None) -> None:
        current: JobStatus = self.get("status")
        if status is current:
            return
        self.updates["status"] = status
        self.history.append(
            HistoryEntry(
                from_status=current,
                to_status=status,
                at=self.now,
                event_id=self.event_id,
                reason=reason,
            )
        )
        if status is JobStatus.IN_PROGRESS:
            self.updates["started_at"] = self.now
        if status.is_terminal:
            self.updates["phase"] = Phase.DONE
            self.updates["finished_at"] = self.now
            if error is not None:
                self.updates["error"] = error
            self.stop_active(reason)

    def stop_active(self, reason: str) -> None:
        for p in self.all_participants():
            if p.active:
                self.commands.append(
                    StopParticipant(
                        command_id=command_id(self.event_id, "stop", p.id),
                        job_id=self.job.id,
                        participant=p.id,
                        worker=p.worker,
                        reason=reason,
                    )
                )

    def finish(self, reason: str) -> Decision:
        job = self.job
        updates = dict(self.updates)
        if self.participants:
            updates["participants"] = {**job.participants, **self.participants}
        if self.history:
            updates["history"] = [*job.history, *self.history]
        candidate = evolve(job, updates)
        deadline_at = next_deadline_at(candidate)
        # ``candidate != job``, comparing only what was touched (everything else is shared).
        changed = (
            bool(self.history)
            or deadline_at != job.deadline_at
            or any(updates[k] != getattr(job, k) for k in self.updates)
            or any(
                getattr(self.participants[pid], name) != getattr(job.participants[pid], name)
                for pid, names in self.touched.items()
                for name in names
            )
        )
        if changed:  # ``candidate`` (from ``evolve``) is ours alone until returned: finish it
            set_in_place(candidate, "deadline_at", deadline_at)
            set_in_place(candidate, "updated_at", self.now)
        quiet = changed or self.metrics or self.checkpoints or reason.startswith(_SILENT)
        return Decision(
            job=candidate if changed else self.job,
            changed=changed,
            reason=reason if quiet else f"no change: {reason}",
            commands=tuple(self.commands),
            metrics=tuple(self.metrics),
            checkpoints=tuple(self.checkpoints),
        )


def decide(job: Job, event: Event, now: datetime) -> Decision:
    """Apply one event to one job. Pure; never raises for bad input, returns a reason."""
    if event.job_id != job.id:
        return Decision(job, False, f"refused: event for job {event.job_id} applied to {job.id}")
    return _liveness(job, event, now) or decide_by_rules(job, event, now)


def decide_by_rules(job: Job, event: Event, now: datetime) -> Decision:
    """The reference path: the transitions table's rule, its handler, the target check.

    ``decide`` takes a shortcut (``_liveness``) for the bulk of the traffic; the property
    tests hold the two equal.
    """
    if event.job_id != job.id:
        return Decision(job, False, f"refused: event for job {event.job_id} applied to {job.id}")
    rule = rule_for(job.status, event.type)
    draft = _Draft(job=job, event_id=event.event_id, now=now)
    reason = _HANDLERS[rule.handler](draft, event)
    decision = draft.finish(reason)
    if decision.job.status not in rule.targets:
        msg = (
            f"{job.status}+{event.type} led to {decision.job.status}, "
            f"allowed: {sorted(rule.targets)}"
        )
        raise TransitionError(msg)
    return decision


# --- the liveness shortcut ---------------------------------------------------------------
#
# Most events are heartbeats and round metrics from participants that are already running.
# They never change a participant's state, so ``_evaluate`` has nothing to re-derive as long
# as the job already sits where ``_evaluate`` would put it. ``_liveness`` checks exactly that,
# folds the event into the participant with one copy of each model, and returns the same
# ``Decision`` as the rules path (tests/daemon/test_core_fastpaths.py); anything else returns
# None and takes the rules path.

# Enum members bound once: ``Phase.RUNNING`` is a class-attribute lookup through the enum's
# metaclass, ~4x the cost of a global, and these run several times per event.
_STARTED = ParticipantState.STARTED
_FINISHED = ParticipantState.FINISHED
_CLIENT = Role.CLIENT
_IN_PROGRESS = JobStatus.IN_PROGRESS
_RUNNING = Phase.RUNNING
_STARTING = Phase.STARTING
_CANCELLING = Phase.CANCELLING
_ACTIVE = frozenset({ParticipantState.ASSIGNED, ParticipantState.STARTED})
_LIVENESS_EVENTS = frozenset({Heartbeat, RoundMetrics, ParticipantStarted})


def _liveness(job: Job, event: Event, now: datetime) -> Decision | None:
    """``decide`` for started/heartbeat/metrics events of a dispatched participant of a
    settled job. ASSIGNED -> STARTED is the one state change it makes: both states are active
    and healthy, so ``_evaluate`` still has nothing to re-derive."""
    if type(event) not in _LIVENESS_EVENTS or job.status is not _IN_PROGRESS:
        return None
    # A participant event from here on (an annotated name rather than ``cast``, which would
    # be one more call per event).
    pe: ParticipantEvent = event  # type: ignore[assignment]
    participants = job.participants
    p = participants.get(pe.participant)
    if p is None or p.state not in _ACTIVE or p.worker != pe.worker:
        return None
    phase = job.phase
    cancelling = phase is _CANCELLING  # (an active participant stays active: nothing to derive)
    if not cancelling and phase is not (_RUNNING if job.round >= 1 else _STARTING):
        return None  # not the phase ``_evaluate`` derives
    changes, record = _progress(p, pe, now)
    if p.state is not _STARTED:
        changes["state"] = _STARTED
    if changes:
        participants = {**participants, p.id: evolve(p, changes)}
    # One pass over the participants for what ``_evaluate`` checks (a server neither down nor
    # finished, enough healthy clients: the event changed neither) and for the heartbeat
    # deadline (the oldest sign of life of an active participant, as ``next_deadline_at``).
    server_ok = False
    healthy = 0
    oldest: datetime | None = None
    for q in participants.values():
        state = q.state
        if state in _ACTIVE:
            seen = q.last_seen or q.assigned_at
            if seen is not None and (oldest is None or seen < oldest):
                oldest = seen
        if q.role is _CLIENT:
            if state in _HEALTHY:
                healthy += 1
        elif state in _HEALTHY and state is not _FINISHED:
            server_ok = True
    if cancelling:
        deadline_at = next_deadline_at(job, participants)
    elif not server_ok or healthy < job.spec.required_clients:
        return None
    else:
        deadline_at = running_deadline_at(job, oldest, participants)
    reason: str
    if record is None:
        records: tuple[MetricRecord, ...] = ()
        reason = event.type
    else:
        records = (record,)
        reason = f"metrics for round {record.round}"
    if not changes and deadline_at == job.deadline_at:
        return Decision(job, False, reason if records else f"no change: {reason}", (), records)
    updates: dict[str, Any] = {"deadline_at": deadline_at, "updated_at": now}
    if changes:
        updates["participants"] = participants
    return fast_tuple(Decision, (evolve(job, updates), True, reason, (), records, (),
                                 "state" not in changes))


def _progress(
    p: Participant, event: ParticipantEvent, now: datetime
) -> tuple[dict[str, Any], MetricRecord | None]:
    """The liveness and progress an event brings its participant, forward only: ``seq`` and
    ``last_seen``, the round it reports, the latest metrics; and the metrics row to record.
    Only fields whose value changes are in the dict."""
    changes: dict[str, Any] = {}
    seq = event.seq  # (each event field read once: they are pydantic model reads)
    if seq > p.last_seq:
        changes["last_seq"] = seq
        if p.last_seen != now:
            changes["last_seen"] = now
    record = None
    if isinstance(event, _ROUND_EVENTS):
        round_ = event.round
        if round_ is not None and round_ > p.round:
            changes["round"] = round_
    elif isinstance(event, RoundMetrics):
        round_ = event.round
        metrics = dict(event.metrics)
        record = fast_tuple(MetricRecord, (event.job_id, p.id, p.role, round_, metrics, now,
                                           event.event_id))
        metrics_round = p.metrics_round
        if metrics_round is None or round_ >= metrics_round:
            if round_ != metrics_round:
                changes["metrics_round"] = round_
            if metrics != p.metrics:
                changes["metrics"] = dict(metrics)
        if round_ > p.round:
            changes["round"] = round_
    return changes, record


# --- handlers ---------------------------------------------------------------------------


def _refuse(draft: _Draft, event: Event) -> str:
    return f"refused: {event.type} while job is {draft.job.status}"




def command_id(event_id: str, action: str, participant: str) -> str:
    """``{event_id}.{action}.{participant}``, or a digest of it when that is not a valid name.

    Event ids are free text (up to 128 characters, any producer's choice) while command ids
    must be names; a deterministic digest keeps resends deduplicable either way.
    """
    plain = f"{event_id}.{action}.{participant}"
    if is_name(plain):
        return plain
    digest = hashlib.sha256(plain.encode()).hexdigest()[:40]
    return f"c{digest}.{action}.{participant}"[:128]


def start_command(job: Job, p: Participant, *, run_id: str, command_id: str) -> StartParticipant:
    """The start command of one participant (built by dispatch; re-sent by reconciliation)."""
    spec = job.spec
    pspec = spec.participant_spec(p.id)
    is_server = p.role is Role.SERVER
    return StartParticipant(
        command_id=command_id,
        job_id=job.id,
        participant=p.id,
        run_id=run_id,
        role=p.role,
        worker=p.worker,
        workload=spec.workload,
        model=spec.model,
        rounds=spec.rounds,
        config=spec.server_config if is_server else pspec.config,
        data_path=pspec.data_path,
        peers=list(job.participants),
        client_index=None if is_server else client_index(p.id),
        client_count=len(spec.clients),
        min_clients=spec.required_clients,
        heartbeat_interval_s=max(0.05, spec.timeouts.heartbeat_s / 3),
        round_timeout_s=spec.timeouts.round_s,
    )


def _dispatch(draft: _Draft, event: Event) -> str:
    assert isinstance(event, JobDispatched)
    job = draft.job
    unknown = sorted(set(event.assignments) - set(job.participants))
    if unknown:
        return f"refused: dispatch names unknown participants {unknown}"
    if "server" not in event.assignments:
        return "refused: dispatch without the server participant"
    assigned_clients = [pid for pid in event.assignments if pid != "server"]
    if len(assigned_clients) < job.spec.required_clients:
        return (
            f"refused: dispatch assigns {len(assigned_clients)} clients, "
            f"{job.spec.required_clients} required"
        )
    for p in job.participants.values():
        run_id = event.assignments.get(p.id)
        if run_id is None:
            draft.set_participant(p, state=ParticipantState.SKIPPED)
            continue
        draft.set_participant(
            p,
            state=ParticipantState.ASSIGNED,
            run_id=run_id,
            assigned_at=draft.now,
            last_seen=draft.now,
        )
        draft.commands.append(
            start_command(
                job, p, run_id=run_id, command_id=command_id(event.event_id, "start", p.id)
            )
        )
    draft.updates["phase"] = Phase.STARTING
    skipped = len(job.participants) - len(event.assignments)
    reason = "dispatched" + (f" ({skipped} unavailable clients skipped)" if skipped else "")
    draft.set_status(JobStatus.IN_PROGRESS, reason)
    return reason


def _cancel(draft: _Draft, event: Event) -> str:
    assert isinstance(event, CancelRequested)
    job = draft.job
    if job.status is JobStatus.NOT_STARTED:
        draft.set_status(JobStatus.FINISHED_CANCELLED, event.reason)
        return "cancelled before dispatch"
    if job.phase is Phase.CANCELLING:
        return "cancel already in progress"
    draft.updates["phase"] = Phase.CANCELLING
    draft.updates["cancel_requested_at"] = draft.now
    draft.stop_active(event.reason)
    if not any(p.active for p in job.participants.values()):
        draft.set_status(JobStatus.FINISHED_CANCELLED, event.reason)
        return "cancelled (nothing running)"
    return "cancelling: stop commands sent"


def _deadline(draft: _Draft, event: Event) -> str:
    assert isinstance(event, DeadlineExpired)
    job, now = draft.job, draft.now
    if not is_due(job, event.kind, event.participant, now):
        return f"deadline {event.kind} not due (state moved on)"
    t = job.spec.timeouts
    if event.kind == "start":
        draft.set_status(
            JobStatus.FINISHED_WITH_ERROR,
            "cannot schedule",
            error=JobError(
                code=ErrorCode.CANNOT_SCHEDULE,
                message=f"workers not available within start timeout of {t.start_s:g}s",
            ),
        )
        return "start deadline expired"
    if event.kind == "cancel_grace":
        draft.set_status(
            JobStatus.FINISHED_CANCELLED, f"cancel grace of {t.cancel_grace_s:g}s over"
        )
        return "cancel grace expired"
    if event.kind == "heartbeat" and event.participant is not None:
        p = draft.participant(event.participant)
        error = JobError(
            code=ErrorCode.WORKER_LOST,
            participant=p.id,
            message=f"no heartbeat from {p.id} on worker {p.worker} for {t.heartbeat_s:g}s",
        )
        draft.set_participant(p, state=ParticipantState.FAILED, error=error)
        return _evaluate(draft, "participant lost")
    if event.kind == "finalize":
        draft.set_status(
            JobStatus.FINISHED_WITH_ERROR,
            "final checkpoint missing",
            error=JobError(
                code=ErrorCode.CHECKPOINT_FAILED,
                participant="server",
                message=f"final checkpoint {job.server.final_checkpoint} was never recorded",
            ),
        )
        return "finalize deadline expired"
    limit = t.round_s if event.kind == "round" else t.job_s
    what = f"round {job.round}" if event.kind == "round" else "job"
    draft.set_status(
        JobStatus.FINISHED_WITH_ERROR,
        f"{what} timed out",
        error=JobError(
            code=ErrorCode.TIMED_OUT,
            message=f"{what} exceeded its timeout of {limit:g}s",
        ),
    )
    return f"{event.kind} deadline expired"


def _participant(draft: _Draft, event: Event) -> str:
    assert not isinstance(event, _JOB_EVENTS)
    reason = _record(draft, event)
    if reason.startswith("refused"):
        return reason
    return _evaluate(draft, reason)


def _absorb(draft: _Draft, event: Event) -> str:
    """Terminal job: the status never changes, but late data is still recorded."""
    if isinstance(event, _JOB_EVENTS):
        return f"ignored: job is {draft.job.status}"
    return _record(draft, event) + f" (job is {draft.job.status})"


_ORDER = (ParticipantStarted, Heartbeat, RoundStarted, RoundMetrics, CheckpointSaved)
# isinstance() with tuples: ``A | B`` in a call builds a union object every time.
_JOB_EVENTS = (JobDispatched, CancelRequested, DeadlineExpired)
_ROUND_EVENTS = (RoundStarted, Heartbeat)


def _record(draft: _Draft, event: ParticipantEvent) -> str:
    """Fold one participant event into the participant (forward-only) and emit records."""
    job = draft.job
    p = job.participants.get(event.participant)
    if p is None:
        return f"refused: {event.participant} is not a participant of job {job.id}"
    if p.worker != event.worker:
        return (
            f"refused: {event.participant} belongs to worker {p.worker}, "
            f"event came from {event.worker}"
        )
    changes, record = _progress(p, event, draft.now)

    def advance(state: ParticipantState, **extra: Any) -> None:
        if state.rank > p.state.rank:
            changes["state"] = state
            changes.update(extra)

    if isinstance(event, _ORDER):
        advance(ParticipantState.STARTED)
    reason: str = event.type
    if record is not None:
        draft.metrics.append(record)
        reason = f"metrics for round {record.round}"
    elif isinstance(event, RoundStarted):
        if p.role is Role.SERVER and event.round > job.round:
            if not job.is_terminal:
                draft.updates["round"] = event.round
                draft.updates["round_started_at"] = draft.now
            reason = f"round {event.round} started"
    elif isinstance(event, CheckpointSaved):
        draft.checkpoints.append(
            CheckpointRecord(
                job.id,
                p.id,
                event.round,
                event.key,
                event.size,
                event.sha256,
                event.parent,
                event.final,
                draft.now,
                event.event_id,
            )
        )
        ref = CheckpointRef(
            key=event.key, round=event.round, participant=p.id, sha256=event.sha256, size=event.size
        )
        latest = draft.get("latest_checkpoint")
        if latest is None or (ref.round, ref.key) >= (latest.round, latest.key):
            draft.updates["latest_checkpoint"] = ref
        if event.final and p.role is Role.SERVER:
            draft.updates["final_checkpoint"] = ref
        reason = f"checkpoint {event.key} recorded"
    elif isinstance(event, ParticipantFinished):
        advance(
            ParticipantState.FINISHED,
            finished_at=draft.now,
            final_checkpoint=event.final_checkpoint,
        )
    elif isinstance(event, ParticipantFailed):
        advance(
            ParticipantState.FAILED,
            finished_at=draft.now,
            error=JobError(code=event.code, message=event.message, participant=p.id),
        )
    elif isinstance(event, ParticipantStopped):
        advance(
            ParticipantState.STOPPED,
            finished_at=draft.now,
            error=JobError(
                code=ErrorCode.WORKER_SHUTDOWN,
                participant=p.id,
                message=event.reason or f"{p.id} stopped",
            ),
        )
    if changes:
        draft.set_participant(p, **changes)
    return reason


_DOWN = frozenset({ParticipantState.FAILED, ParticipantState.STOPPED})
_HEALTHY = frozenset(
    {ParticipantState.ASSIGNED, ParticipantState.STARTED, ParticipantState.FINISHED}
)


def _evaluate(draft: _Draft, reason: str) -> str:
    """Re-derive the job's status and phase from its participants' states."""
    if draft.get("status") is not JobStatus.IN_PROGRESS:
        return reason
    parts = draft.all_participants()
    server = draft.participant("server")
    if draft.get("phase") is Phase.CANCELLING:
        if all(not p.active for p in parts):
            draft.set_status(JobStatus.FINISHED_CANCELLED, "cancelled: all participants stopped")
            return "cancelled"
        return reason
    if server.state in _DOWN:
        draft.set_status(
            JobStatus.FINISHED_WITH_ERROR, f"server {server.state}", error=server.error
        )
        return f"server {server.state}"
    if server.state is ParticipantState.FINISHED:
        final = draft.get("final_checkpoint")
        wanted = server.final_checkpoint
        if wanted is None or (final is not None and final.key == wanted):
            draft.set_status(JobStatus.FINISHED_SUCCESSFULLY, "server finished")
            return "finished successfully"
        draft.updates["phase"] = Phase.FINALIZING
        return f"{reason}; waiting for final checkpoint {wanted}"
    clients = [p for p in parts if p.role is Role.CLIENT]
    healthy = [p for p in clients if p.state in _HEALTHY]
    required = draft.job.spec.required_clients
    if len(healthy) < required:
        failed = [p for p in clients if p.state in _DOWN]
        error = next((p.error for p in failed if p.error is not None), None)
        draft.set_status(
            JobStatus.FINISHED_WITH_ERROR,
            f"{len(healthy)} healthy clients left, {required} required",
            error=error,
        )
        return "too few clients"
    draft.updates["phase"] = Phase.RUNNING if draft.get("round") >= 1 else Phase.STARTING
    return reason


_HANDLERS = {
    "dispatch": _dispatch,
    "cancel": _cancel,
    "deadline": _deadline,
    "participant": _participant,
    "refuse": _refuse,
    "absorb": _absorb,
}
