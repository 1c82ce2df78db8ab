"""The working copy of one decision: the job as a batch's events change it.

``decide`` (``orchestrator.core.machine``) hands each event's handler a ``Draft``; handlers
read the current values through it and change fields, participants and the status only
through its methods, which keep the history, the stop and membership commands, and the count
of edits that tells whether an event applied. ``Draft.decision`` freezes it into a
``Decision``: the changed document paths, one ``dataclasses.replace`` of the job, the
deadline recomputed (a ``Draft`` is a ``Timed``: deadlines read it as they read a job).
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import datetime
from typing import Any

from orchestrator.core.commands import Command, MembershipChanged, StopParticipant, command_id
from orchestrator.core.deadlines import ACTIVE_STATES, next_deadline_at
from orchestrator.core.job import HistoryEntry, Job, JobError, Participant
from orchestrator.core.records import CheckpointRecord, Decision, MetricRecord, Outcome
from orchestrator.core.spec import JobSpec
from orchestrator.core.status import TERMINAL, JobStatus, ParticipantState, Phase, Role

HEALTHY_STATES = frozenset(
    {ParticipantState.ASSIGNED, ParticipantState.STARTED, ParticipantState.FINISHED})
DOWN_STATES = frozenset({ParticipantState.FAILED, ParticipantState.STOPPED})
#: A client in one of these is gone for the rest of the job (the server is told).
GONE_STATES = frozenset({*DOWN_STATES, ParticipantState.SKIPPED})
_ANNOUNCED = ("status", "phase", "round", "error", "latest_checkpoint", "final_checkpoint")
_PARTICIPANT_FIELDS = tuple(f.name for f in fields(Participant))


class Draft:
    """The job as the batch's events change it; frozen into a ``Decision`` at the end."""

    def __init__(self, job: Job, now: datetime) -> None:
        self.original = job
        self.now = now
        self.event_id = ""
        self.rule = ""  # the rule deciding now: recorded with each status change
        self.fields: dict[str, Any] = {}
        self.participants = job.participants  # copied on the first participant change
        self.touched: dict[str, set[str]] = {}  # participant -> the fields ``update`` changed
        self.history: list[HistoryEntry] = []
        self.commands: list[Command] = []
        self.metrics: list[MetricRecord] = []
        self.checkpoints: list[CheckpointRecord] = []
        self.edits = 0  # grows with every change and record: tells whether an event applied
        self.joint_due = False  # a participant's state, the phase or the round changed
        self.gone: list[str] = []  # clients gone with the event being applied

    def get(self, name: str) -> Any:
        return self.fields[name] if name in self.fields else getattr(self.original, name)

    def set(self, name: str, value: Any) -> None:
        if self.get(name) != value:
            self.fields[name] = value
            self.edits += 1
            self.joint_due = self.joint_due or name in ("phase", "round")

    def update(self, p: Participant, **changes: Any) -> None:
        """Change a participant's fields (only those whose value differs count)."""
        changes = {k: v for k, v in changes.items() if getattr(p, k) != v}
        if not changes:
            return
        if self.participants is self.original.participants:
            self.participants = dict(self.participants)
        self.participants[p.id] = replace(p, **changes)
        self.touched.setdefault(p.id, set()).update(changes)
        self.edits += 1
        self.joint_due = self.joint_due or "state" in changes
        if p.role is Role.CLIENT and changes.get("state") in GONE_STATES:
            self.gone.append(p.id)

    def tell_server(self) -> None:
        """A running server hears of the clients gone with this event (``MembershipChanged``),
        so that its workload goes on without them at once."""
        gone, self.gone = self.gone, []
        server = self.participants["server"]
        if (not gone or self.get("status") is not JobStatus.IN_PROGRESS
                or self.get("phase") is Phase.CANCELLING or server.state not in ACTIVE_STATES):
            return
        self.commands.append(MembershipChanged(
            command_id=command_id(self.event_id, "membership", "server"),
            job_id=self.original.id, participant="server", worker=server.worker,
            run_id=server.run_id, gone=sorted(gone),
            reason=", ".join(f"{pid} {self.participants[pid].state}" for pid in sorted(gone))))

    # --- the job as it stands now, for ``deadlines`` (a ``Timed``) -------------------------
    @property
    def spec(self) -> JobSpec:
        return self.original.spec

    @property
    def status(self) -> JobStatus:
        status: JobStatus = self.get("status")
        return status

    @property
    def phase(self) -> Phase:
        phase: Phase = self.get("phase")
        return phase

    @property
    def created_at(self) -> datetime:
        return self.original.created_at

    @property
    def started_at(self) -> datetime | None:
        started: datetime | None = self.get("started_at")
        return started

    @property
    def cancel_requested_at(self) -> datetime | None:
        requested: datetime | None = self.get("cancel_requested_at")
        return requested

    @property
    def round_started_at(self) -> datetime | None:
        started: datetime | None = self.get("round_started_at")
        return started

    def set_status(self, status: JobStatus, reason: str, error: JobError | None = None) -> None:
        current = self.get("status")
        if status is current:
            return
        self.set("status", status)
        self.history.append(HistoryEntry(from_status=current, to_status=status, at=self.now,
                                         event_id=self.event_id, reason=reason,
                                         rule=self.rule or None))
        if status is JobStatus.IN_PROGRESS:
            self.set("started_at", self.now)
        if status in TERMINAL:
            self.set("phase", Phase.DONE)
            self.set("finished_at", self.now)
            if error is not None:
                self.set("error", error)
            self.stop_active(reason)

    def stop_active(self, reason: str) -> None:
        for p in self.participants.values():
            if p.state in ACTIVE_STATES:
                self.commands.append(StopParticipant(
                    command_id=command_id(self.event_id, "stop", p.id), job_id=self.original.id,
                    participant=p.id, worker=p.worker, reason=reason, run_id=p.run_id))
                self.edits += 1

    def decision(self, outcomes: list[Outcome]) -> Decision:
        job = self.original
        reason = next((o.reason for o in reversed(outcomes) if o.applied), "")
        deadline_at = next_deadline_at(self)
        changed = [name for name, value in self.fields.items() if getattr(job, name) != value]
        if deadline_at != job.deadline_at:
            changed.append("deadline_at")
        for pid, names in self.touched.items():  # (a field changed and back is left out)
            p, before = self.participants[pid], job.participants[pid]
            changed.extend(f"participants.{pid}.{name}" for name in _PARTICIPANT_FIELDS
                           if name in names and getattr(p, name) != getattr(before, name))
        commands, metrics = tuple(self.commands), tuple(self.metrics)
        checkpoints, outcome_list = tuple(self.checkpoints), tuple(outcomes)
        if not changed and not self.history:
            return Decision(job, commands=commands, metrics=metrics, checkpoints=checkpoints,
                            outcomes=outcome_list, reason=reason)
        fields: dict[str, Any] = {**self.fields, "deadline_at": deadline_at,
                                  "updated_at": self.now, "version": job.version + 1}
        if self.participants is not job.participants:
            fields["participants"] = self.participants
        if self.history:
            fields["history"] = [*job.history, *self.history]
        announce = any(name in _ANNOUNCED for name in self.fields if name in changed) or any(
            p.state.is_terminal and p.state is not job.participants[pid].state
            for pid, p in self.participants.items())
        return Decision(replace(job, **fields), changed=(*changed, "updated_at", "version"),
                        history=tuple(self.history), commands=commands, metrics=metrics,
                        checkpoints=checkpoints, outcomes=outcome_list, announce=announce,
                        reason=reason)
