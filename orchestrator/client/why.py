"""``why JOB``: a short causal account of how a job ended (or where it stands), from its own
records only — the history entry that ended it, its error, the participant it names with its
last heartbeat and sequence number, the deadline that fired, refused events that claimed the
job, and what an operator can do next. Pure: the job, its refused events, a rejection and
``now`` come in; an :class:`Explanation` comes out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from orchestrator.core import (
    JOINT,
    ErrorCode,
    HistoryEntry,
    Job,
    JobError,
    JobStatus,
    Participant,
)
from orchestrator.store.port import RefusedEvent, Rejection
from orchestrator.watch.model import age_s, format_age

#: What the operator can do, by error code (``{worker}``, ``{participant}`` filled in).
ADVICE: dict[ErrorCode, str] = {
    ErrorCode.WORKER_LOST: ("check worker {worker}: is its process running, can its host reach "
                            "Redis, what do its logs say around the last heartbeat? "
                            "(orchestrator workers; orchestrator logs JOB -p {participant})"),
    ErrorCode.CANNOT_SCHEDULE: ("start the named worker (orchestrator worker --name {worker} …) "
                                "or install the workload on it (orchestrator workloads lists "
                                "what live workers offer), then submit again"),
    ErrorCode.WORKLOAD_FAILED: ("read the participant's output (orchestrator logs JOB -p "
                                "{participant}); fix the workload or its config and submit "
                                "again"),
    ErrorCode.TIMED_OUT: ("the job or a round ran past its timeout: raise timeouts.round_s / "
                          "timeouts.job_s in the spec, or find what was slow (orchestrator "
                          "events JOB)"),
    ErrorCode.CHECKPOINT_FAILED: ("the final checkpoint never reached the object store: check "
                                  "the store (orchestrator storage check) and the server's "
                                  "logs"),
    ErrorCode.STORAGE_UNAVAILABLE: ("the object store stayed unreachable past the retry "
                                    "budget: check it (orchestrator storage check), then "
                                    "submit again"),
    ErrorCode.WORKER_SHUTDOWN: ("worker {worker} was shut down while it ran the participant; "
                                "submit again once it is back"),
    ErrorCode.ORCHESTRATOR_RESTART: "the daemon restarted and could not resume it; submit again",
    ErrorCode.INVALID_SPEC: "fix the spec (orchestrator submit validates it) and submit again",
}

DEADLINE_KINDS = ("start", "heartbeat", "round", "job", "cancel_grace", "finalize")


@dataclass(frozen=True, slots=True)
class Explanation:
    """The account: a headline, the facts behind it (one line each) and advice."""

    job_id: str
    status: str
    headline: str
    facts: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    rule: str | None = None
    event_id: str | None = None
    deadline: str | None = None
    participant: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.job_id, "status": self.status, "headline": self.headline,
                "rule": self.rule, "event_id": self.event_id, "deadline": self.deadline,
                "participant": self.participant, "facts": self.facts, "advice": self.advice}

    def lines(self) -> list[str]:
        out = [f"job {self.job_id}: {self.headline}"]
        out += [f"  - {fact}" for fact in self.facts]
        out += [f"  what to do: {tip}" for tip in self.advice]
        return out


def deadline_of(event_id: str) -> tuple[str, str | None] | None:
    """(kind, participant) when ``event_id`` is one the reaper made
    (``deadline.<job>.<kind>.<participant|job>.v<version>``), read from the right (a job id
    may hold dots; participant ids and kinds do not)."""
    parts = event_id.split(".")
    if parts[0] != "deadline" or len(parts) < 5 or not parts[-1].startswith("v"):
        return None
    kind, who = parts[-3], parts[-2]
    if kind not in DEADLINE_KINDS:
        return None
    return kind, None if who == "job" else who


def _participant_facts(p: Participant, now: datetime, job_error: JobError | None = None
                       ) -> list[str]:
    seen = ("never heard from" if p.last_seen is None else
            f"last heard from {format_age(age_s(p.last_seen, now))} ago "
            f"({p.last_seen:%Y-%m-%d %H:%M:%S} UTC), last sequence number {p.last_seq}")
    facts = [f"{p.id} ({p.role.value}) on worker {p.worker}: {p.state.value}, round "
             f"{p.round}; {seen}"]
    if p.error is not None and p.error != job_error:
        facts.append(f"{p.id} reported {p.error.code.value}: {p.error.message}")
    return facts


def _ending(job: Job) -> HistoryEntry | None:
    return next((h for h in reversed(job.history) if h.to_status is job.status), None)


def explain(job: Job, now: datetime, refused: Sequence[RefusedEvent] = ()) -> Explanation:
    """How ``job`` came to its status, from its records."""
    entry = _ending(job)
    facts: list[str] = []
    advice: list[str] = []
    participant = job.error.participant if job.error is not None else None
    deadline = None if entry is None else deadline_of(entry.event_id)
    if deadline is not None and participant is None:
        participant = deadline[1]
    if entry is not None:
        came = "submitted" if entry.from_status is None else entry.from_status.value
        facts.append(f"{came} → {entry.to_status.value} at {entry.at:%Y-%m-%d %H:%M:%S} UTC, "
                     f"on event {entry.event_id}: {entry.reason} (rule {rule_of(entry)})")
    if deadline is not None:
        kind, who = deadline
        limit = _limit(job, kind)
        facts.append(f"the {kind} deadline fired" + (f" for {who}" if who else "")
                     + (f" (timeout {limit:g}s)" if limit is not None else ""))
    if job.error is not None:
        facts.append(f"error {job.error.code.value}: {job.error.message}")
    if participant is not None and participant in job.participants:
        facts += _participant_facts(job.participants[participant], now, job.error)
    elif job.is_terminal and job.status is not JobStatus.FINISHED_SUCCESSFULLY:
        for p in job.participants.values():
            if p.error is not None or p.state.value in ("failed", "stopped"):
                facts += _participant_facts(p, now, job.error)
    if job.status is JobStatus.FINISHED_SUCCESSFULLY and job.final_checkpoint is not None:
        final = job.final_checkpoint
        facts.append(f"final checkpoint {final.key} (round {final.round}, {final.size} bytes, "
                     f"sha256 {final.sha256[:12]}…): orchestrator checkpoints {job.id} --final")
    if job.cancel_requested_at is not None:
        facts.append(f"cancel requested at {job.cancel_requested_at:%Y-%m-%d %H:%M:%S} UTC")
    if refused:
        facts.append(f"{len(refused)} event(s) claiming this job were refused as not authentic, "
                     f"the latest: {refused[0].event_type or '?'} from worker "
                     f"{refused[0].worker or '?'} ({refused[0].reason})")
    if job.error is not None:
        worker = (job.participants[participant].worker
                  if participant in job.participants else _named_worker(job))
        tip = ADVICE.get(job.error.code)
        if tip:
            advice.append(tip.format(worker=worker, participant=participant or "PARTICIPANT")
                          .replace("JOB", job.id))
    return Explanation(
        job_id=job.id, status=job.status.value, headline=_headline(job, entry), facts=facts,
        advice=advice, rule=None if entry is None else rule_of(entry),
        event_id=None if entry is None else entry.event_id,
        deadline=None if deadline is None else deadline[0], participant=participant)


def explain_rejection(rejection: Rejection) -> Explanation:
    """The account of a submission the daemon refused (no job was created)."""
    facts = [f"rejected at {rejection.at:%Y-%m-%d %H:%M:%S} UTC from {rejection.source}"
             + (f" entry {rejection.entry_id}" if rejection.entry_id else "")]
    advice = {"duplicate_job": "submit under a new job id, or omit job_id",
              "idempotency_conflict": "use a new idempotency key for a different spec"}.get(
                  rejection.kind, "fix the spec (orchestrator submit validates it locally) "
                                  "and submit again")
    return Explanation(job_id=rejection.job_id or "?", status="REJECTED",
                       headline=f"rejected ({rejection.kind}): {rejection.reason}",
                       facts=facts, advice=[advice], rule=rejection.kind)


def rule_of(entry: HistoryEntry) -> str:
    """The state-machine rule behind a history entry: the deadline event that set the status
    (any but a heartbeat deadline, which only marks its participant lost), or the joint-state
    rule of ``JOINT`` (named as there) that ended an IN_PROGRESS job —
    among those that end in the entry's status, the one whose name shares most words with
    the entry's reason (``server failed`` → ``server down``). The daemon records the rule in
    each history entry (``entry.rule``); the guess is for entries written before it did."""
    if entry.rule:
        return entry.rule
    deadline = deadline_of(entry.event_id)
    if deadline is not None and deadline[0] != "heartbeat":  # (a lost participant: JOINT)
        return f"event: deadline.expired ({deadline[0]})"
    if entry.from_status is None:
        return "new job"
    candidates = [r for r in JOINT if r.ends is entry.to_status]
    if entry.from_status is not JobStatus.IN_PROGRESS or not candidates:
        return f"event: {entry.reason}"
    words = set(entry.reason.replace(":", " ").replace(",", " ").split())
    best = max(candidates, key=lambda r: len(words & set(r.name.replace(",", " ").split())))
    return f"joint: {best.name}"


def _headline(job: Job, entry: HistoryEntry | None) -> str:
    if not job.is_terminal:
        return f"{job.status.value} ({job.phase.value}, round {job.round}/{job.spec.rounds}): " \
               "it has not ended"
    why = entry.reason if entry is not None else "no history entry recorded"
    return f"{job.status.value}: {why}"


def _limit(job: Job, kind: str) -> float | None:
    t = job.spec.timeouts
    return {"start": t.start_s, "heartbeat": t.heartbeat_s, "round": t.round_s,
            "job": t.job_s, "cancel_grace": t.cancel_grace_s}.get(kind)


def _named_worker(job: Job) -> str:
    """For cannot_schedule without a participant: the worker its message names, else any."""
    message = job.error.message if job.error is not None else ""
    for p in job.participants.values():
        if f"'{p.worker}'" in message or f" {p.worker} " in f" {message} ":
            return p.worker
    return next(iter(job.participants.values())).worker
