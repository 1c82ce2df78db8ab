"""Intake: submissions stream → validated job spec → idempotent create, or a recorded rejection.

Wire format of a submission entry (any Redis client can write it)::

    XADD <ns>:submissions * spec '<JobSpec JSON>' [idempotency_key '<key>']

``idempotency_key`` (1 to 256 printable characters) overrides the spec's own. The job id is
``spec.job_id`` or, when absent, ``submission_job_id(entry_id, namespace)`` — derived from
the entry id, so a redelivered submission never creates a second job. Every rejection is
recorded in the store (``rejections``) and copied to the dead-letter stream with its kind and
reason, then acknowledged; the daemon never stops on bad input.
"""

from __future__ import annotations

import json
from collections.abc import Set
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
from pydantic import ValidationError

from orchestrator.bus.streams import Entry, submission_job_id
from orchestrator.core import Job, JobSpec, validation_problems
from orchestrator.daemon.effects import Stopping, utcnow
from orchestrator.logs import get_logger

if TYPE_CHECKING:
    from orchestrator.daemon.app import Daemon

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


def parse_submission(
    entry: Entry, *, max_bytes: int, workloads: Set[str], namespace: str
) -> Accepted | Refused:
    """Validate one submission entry (pure)."""
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
        data = json.loads(raw)
    except ValueError as exc:
        return Refused("not_json", f"spec is not valid JSON: {exc}")
    except RecursionError:
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
    if spec.workload not in workloads:
        known = ", ".join(sorted(workloads)) or "(none)"
        return Refused("unknown_workload",
                       f"unknown workload {spec.workload!r}; known workloads: {known}", job_hint)
    return Accepted(spec.job_id or submission_job_id(entry.id, namespace), spec)


def _same_request(a: JobSpec, b: JobSpec) -> bool:
    """Equal specs, ignoring a job id that only one of them names."""
    return a.model_copy(update={"job_id": None}) == b.model_copy(update={"job_id": None})


class Intake:
    """Reads submissions and turns each into a job or a rejection."""

    def __init__(self, daemon: Daemon, workloads: Set[str]) -> None:
        self.daemon = daemon
        self.workloads = workloads
        opts = daemon.options
        self.consumer = daemon.consumer_of([daemon.keys.submissions],
                                           batch=min(opts.batch_size, 100))

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None:
        await self.daemon.effects.retry(self.consumer.ensure_groups,
                                        "Redis (create submissions group)", shield=False)
        task_status.started()
        await self.daemon.consume(self.consumer, self.handle)

    async def handle(self, entries: list[Entry]) -> None:
        accepted: list[Entry] = []
        for entry in entries:
            try:
                ok = await self._one(entry)
            except Stopping:
                raise
            except Exception as exc:  # one entry that breaks intake is rejected alone
                log.exception("submission could not be handled", entry_id=entry.id)
                await self.daemon.reject(self.consumer, entry, "unprocessable",
                                         f"handling the submission failed: "
                                         f"{type(exc).__name__}: {exc}",
                                         payload=entry.fields.get("spec", ""))
                continue
            if ok:
                accepted.append(entry)
        await self.daemon.effects.commit((), (), accepted, self.consumer)

    async def _one(self, entry: Entry) -> bool:
        """True if the entry is to be acknowledged with the batch (rejections ack themselves)."""
        opts = self.daemon.options
        parsed = parse_submission(entry, max_bytes=opts.max_submission_bytes,
                                  workloads=self.workloads, namespace=opts.namespace)
        if isinstance(parsed, Refused):
            await self.daemon.reject(self.consumer, entry, parsed.kind, parsed.reason,
                                     job_id=parsed.job_id, payload=entry.fields.get("spec", ""))
            return False
        now = utcnow()
        job = Job.new(parsed.job_id, parsed.spec, now, event_id=f"submit:{entry.id}")
        effects = self.daemon.effects
        stored, created = await effects.retry(lambda: self.daemon.store.create(job), "create job")
        stats = self.daemon.stats
        if created:
            stats.submissions_accepted += 1
            log.info("job submitted", job_id=job.id, workload=job.spec.workload,
                     clients=len(job.spec.clients), entry_id=entry.id)
            self.daemon.wake_admission()
            await effects.commit((), [(stored, "submitted")])
            return True
        if stored.id == job.id and _same_request(stored.spec, job.spec):
            stats.submissions_duplicate += 1
            log.info("duplicate submission of an existing job", job_id=job.id, entry_id=entry.id)
            return True
        if stored.id == job.id:
            kind, reason = "duplicate_job", (
                f"job {job.id} already exists with a different spec; "
                "submit under a new job id (or omit job_id)")
        elif _same_request(stored.spec, job.spec):
            stats.submissions_duplicate += 1
            log.info("duplicate submission (idempotency key)", job_id=stored.id,
                     idempotency_key=job.idempotency_key, entry_id=entry.id)
            return True
        else:
            kind, reason = "idempotency_conflict", (
                f"idempotency key {job.idempotency_key!r} already names job {stored.id} "
                "with a different spec")
        await self.daemon.reject(self.consumer, entry, kind, reason, job_id=job.id,
                                 payload=entry.fields.get("spec", ""))
        return False


__all__ = ["Accepted", "Intake", "Refused", "Stopping", "parse_submission"]
