"""Intake: submissions stream → validated job spec → idempotent create, or a recorded rejection.

Wire format of a submission entry (any Redis client can write it)::

    XADD <ns>:submissions * spec '<JobSpec JSON>' [idempotency_key '<key>']

``idempotency_key`` (1 to 256 printable characters) overrides the spec's own. The job id is
``spec.job_id`` or, when absent, ``submission_job_id(entry_id, namespace)`` — derived from
the entry id, so a redelivered submission never creates a second job. Every rejection is
recorded in the store (``rejections``) and copied to the dead-letter stream with its kind and
reason, then acknowledged; the daemon never stops on bad input.

A batch of submissions costs one ``insert_many`` and one commit (and a liveness read of the
workers not seen alive in the last second, ``Liveness``):
jobs whose workers are suitable (alive, of the role, offering the workload) are inserted
already dispatched (``decide`` with a ``JobDispatched``), and their start commands go out in
the commit; a job naming a live worker of the other role, or one that does not offer the
workload, is inserted FINISHED_WITH_ERROR (``JobUnschedulable``); the others are
inserted NOT_STARTED and wait for admission. The daemon keeps no list of workload names: a job
whose workload no named worker offers fails at admission, naming the worker.

Before a spec's JSON is parsed, its size, nesting depth and key count are checked
(``oversize``, ``too_deep``, ``too_many_keys``); duplicate keys are refused
(``duplicate_key``); NaN and infinities are refused by the spec model (``not a finite
number``, naming the field).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from orchestrator.bus import Bus, Entry, StreamConsumer, submission_job_id
from orchestrator.core import (
    Decision,
    Job,
    JobSpec,
    JobStatus,
    decide,
    new_job,
    validation_problems,
)
from orchestrator.core.jsonshape import JsonShapeError
from orchestrator.core.spec import load_spec_json
from orchestrator.daemon.admission import plan_dispatch
from orchestrator.daemon.apply import note_status_changes
from orchestrator.daemon.commit import Commit
from orchestrator.daemon.liveness import Liveness
from orchestrator.daemon.reconcile import recovery_commands
from orchestrator.daemon.rejections import Refusal, reject
from orchestrator.daemon.retry import Retrier
from orchestrator.daemon.stats import Stats, utcnow
from orchestrator.logs import get_logger
from orchestrator.store import JobStore

log = get_logger("orchestrator.daemon.intake")

ALLOWED_FIELDS = frozenset({"spec", "idempotency_key"})
MAX_IDEMPOTENCY_KEY = 256


@dataclass(frozen=True, slots=True)
class Accepted:
    job_id: str
    spec: JobSpec


@dataclass(frozen=True, slots=True)
class Refused:
    kind: str
    reason: str
    job_id: str | None = None


def summarize(exc: ValidationError, limit: int = 5) -> str:
    """The first ``limit`` problems of a validation on one line, for a rejection reason."""
    problems = validation_problems(exc)
    more = len(problems) - limit
    return "; ".join(problems[:limit]) + (f"; and {more} more" if more > 0 else "")


def _classify(exc: ValidationError) -> str:
    errors = exc.errors()
    if any(e["type"] == "extra_forbidden" for e in errors):
        return "unknown_field"
    if any(e["loc"][:1] == ("job_id",) for e in errors):
        return "bad_job_id"
    if any(e["loc"][:1] == ("idempotency_key",) for e in errors):
        return "invalid_idempotency_key"
    return "invalid_spec"


def parse_submission(entry: Entry, *, max_bytes: int, namespace: str) -> Accepted | Refused:
    """Validate one submission entry (pure). Any well-formed workload name is accepted:
    whether a worker offers it is admission's question (``orchestrator.core.suitability``)."""
    unknown = sorted(set(entry.fields) - ALLOWED_FIELDS)
    raw = entry.fields.get("spec")
    if raw is None:
        return Refused("missing_spec", "the entry has no 'spec' field "
                       f"(fields: {sorted(entry.fields) or 'none'})")
    if unknown:
        return Refused("unknown_field", f"unknown entry fields {unknown}; "
                       f"allowed: {sorted(ALLOWED_FIELDS)}")
    size = len(raw.encode("utf-8", "replace"))
    if size > max_bytes:
        return Refused("oversize", f"spec is {size} bytes; the limit is {max_bytes}")
    try:
        data = load_spec_json(raw)
    except JsonShapeError as exc:
        return Refused(exc.kind, exc.reason)
    except ValueError as exc:
        return Refused("not_json", f"spec is not valid JSON: {exc}")
    except RecursionError:  # (the shape check makes this unreachable; kept as a backstop)
        return Refused("too_deep", "spec is nested too deeply to decode")
    if not isinstance(data, dict):
        return Refused("not_object", f"spec must be a JSON object, got {type(data).__name__}")
    job_hint = data.get("job_id") if isinstance(data.get("job_id"), str) else None
    key = entry.fields.get("idempotency_key")
    if key is not None:
        if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable():
            return Refused("invalid_idempotency_key",
                           f"idempotency_key must be 1-{MAX_IDEMPOTENCY_KEY} printable "
                           f"characters (got {len(key)} characters)", job_hint)
        data["idempotency_key"] = key
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        return Refused(_classify(exc), f"invalid job spec: {summarize(exc)}", job_hint)
    return Accepted(spec.job_id or submission_job_id(entry.id, namespace), spec)


def same_request(a: JobSpec, b: JobSpec) -> bool:
    """Equal specs, ignoring a job id that only one of them names."""
    return a.model_copy(update={"job_id": None}) == b.model_copy(update={"job_id": None})


@dataclass(frozen=True, slots=True)
class Candidate:
    """An accepted submission, its job (dispatched at once when its workers are alive), and
    the decision that dispatched it."""

    entry: Entry
    job: Job
    dispatch: Decision | None


@dataclass(slots=True)
class IntakeHandler:
    """Handles the batches of the submissions consumer: one insert and one dispatch pass per
    batch. A job whose workers are alive is inserted already dispatched (its start commands
    go out in the commit); the others wait for admission."""

    store: JobStore
    bus: Bus
    consumer: StreamConsumer
    retry: Retrier
    stats: Stats
    max_bytes: int
    namespace: str
    #: Called when jobs were created that wait for their workers.
    jobs_waiting: Callable[[], None]
    #: Worker liveness, read from Redis at most once a second per worker.
    liveness: Liveness

    def _candidate(self, entry: Entry) -> Accepted | Refusal:
        parsed = parse_submission(entry, max_bytes=self.max_bytes, namespace=self.namespace)
        if isinstance(parsed, Refused):
            return Refusal(entry, parsed.kind, parsed.reason, parsed.job_id,
                           entry.fields.get("spec", ""))
        return parsed

    async def __call__(self, entries: list[Entry]) -> Commit:
        now = utcnow()
        refusals: list[Refusal] = []
        accepted: list[tuple[Entry, Job]] = []
        for entry in entries:
            try:
                parsed = self._candidate(entry)
                if isinstance(parsed, Refusal):
                    refusals.append(parsed)
                    continue
                accepted.append((entry, new_job(parsed.job_id, parsed.spec, now,
                                                event_id=f"submit:{entry.id}")))
            except Exception as exc:  # one entry that breaks intake is rejected alone
                log.exception("submission could not be handled", entry_id=entry.id)
                refusals.append(Refusal(entry, "unprocessable", "handling the submission "
                                        f"failed: {type(exc).__name__}: {exc}", None,
                                        entry.fields.get("spec", "")))
        candidates = await self._dispatch(accepted, now)
        commit = Commit()
        acks: list[Entry] = []
        if candidates:
            existing = await self.retry(
                lambda: self.store.insert_many([c.job for c in candidates]), "create jobs")
            for candidate, holder in zip(candidates, existing, strict=True):
                refusal = self._outcome(candidate, holder, commit)
                if refusal is None:
                    acks.append(candidate.entry)
                else:
                    refusals.append(refusal)
        await reject(refusals, store=self.store, consumer=self.consumer, retry=self.retry,
                     stats=self.stats)
        commit.ack(self.consumer, acks)
        if any(c.dispatch is None for c in candidates):
            self.jobs_waiting()
        return commit

    async def _dispatch(self, accepted: list[tuple[Entry, Job]], now: datetime
                        ) -> list[Candidate]:
        """Dispatch every new job whose workers are alive now (one liveness read); fail at
        once a job naming a live worker of the other role."""
        if not accepted:
            return []
        names = sorted({p.worker for _, job in accepted for p in job.participants.values()})
        alive = await self.liveness.alive(names)
        candidates = []
        for entry, job in accepted:
            plan = plan_dispatch(job, alive)
            if isinstance(plan, str):
                candidates.append(Candidate(entry, job, None))
                continue
            decision = decide(job, [plan], now)
            candidates.append(Candidate(entry, decision.job, decision))
        return candidates

    def _outcome(self, c: Candidate, holder: Job | None, commit: Commit) -> Refusal | None:
        """Created, a duplicate (acknowledged), or a conflict (refused)."""
        job = c.job
        if holder is None:
            self.stats.submissions_accepted += 1
            if c.dispatch is not None:  # (its status change is the INFO line: one per job)
                if job.status is JobStatus.IN_PROGRESS:  # (else refused: a worker's role)
                    self.stats.dispatched += 1
                note_status_changes(c.dispatch, self.stats)
                commit.queue(self.bus, c.dispatch.commands, [(job, c.dispatch.reason)])
            else:
                commit.queue(self.bus, (), [(job, "submitted")])
                log.info("job submitted; waiting for its workers", job_id=job.id,
                         workload=job.spec.workload, clients=len(job.spec.clients),
                         entry_id=c.entry.id)
            return None
        if same_request(holder.spec, job.spec):
            # A resend (or a redelivery after a crash): the job stands; its start commands
            # go out again in case the first commit never happened (workers dedupe them).
            self.stats.submissions_duplicate += 1
            log.info("duplicate submission of an existing job", job_id=holder.id,
                     entry_id=c.entry.id)
            commit.queue(self.bus, recovery_commands(holder))
            return None
        if holder.id == job.id:
            return Refusal(c.entry, "duplicate_job", f"job {job.id} already exists with a "
                           "different spec; submit under a new job id (or omit job_id)",
                           job.id, c.entry.fields.get("spec", ""))
        return Refusal(c.entry, "idempotency_conflict", f"idempotency key "
                       f"{job.idempotency_key!r} already names job {holder.id} with a "
                       "different spec", job.id, c.entry.fields.get("spec", ""))


__all__ = ["Accepted", "IntakeHandler", "Refused", "parse_submission"]
